//! Peer identifiers: the SHA-256 hash of a node's raw 32-byte Ed25519 public key.

use crate::error::{CoreError, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A node's identity as others name it, independent of any address.
///
/// Its text form is 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// The peer id of an Ed25519 public key.
    pub fn from_public_key(key: &[u8; 32]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// Wraps 32 raw bytes (already a hash).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short prefix for logs and reprs.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl FromStr for PeerId {
    type Err = CoreError;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let count = text.chars().count();
        if count != 64 {
            return Err(CoreError::InvalidPeerId(format!(
                "expected 64 hex characters, got {count}"
            )));
        }
        if let Some(pos) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(CoreError::InvalidPeerId(format!(
                "non-hex character at position {pos}"
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            // Both are ASCII hex digits, checked above.
            out[i] = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        Ok(Self(out))
    }
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.wrapping_sub(b'A').wrapping_add(10) & 0x0f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let id = PeerId::from_public_key(&[7u8; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<PeerId>().unwrap(), id);
    }

    #[test]
    fn matches_sha256_of_key() {
        // SHA-256 of 32 zero bytes, a published test value.
        let id = PeerId::from_public_key(&[0u8; 32]);
        assert_eq!(
            id.to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn bad_text_is_rejected_clearly() {
        let err = "abc".parse::<PeerId>().unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
        let mut s = "0".repeat(64);
        s.replace_range(10..11, "g");
        let err = s.parse::<PeerId>().unwrap_err();
        assert!(err.to_string().contains("position 10"), "{err}");
        assert!("é".repeat(32).parse::<PeerId>().is_err());
    }
}
