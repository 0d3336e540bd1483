//! Node identity: an Ed25519 key pair whose public key hashes to the node's [`PeerId`].
//!
//! The secret key never leaves this type except as PKCS#8 (for the key file and the TLS
//! certificate), always wrapped in a zeroizing buffer, and never through `Debug`.

use crate::error::{CoreError, Result};
use crate::peer_id::PeerId;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::OsRng;
use std::fmt;

pub use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;

/// An Ed25519 key pair: the identity of a node.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A new random identity from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| CoreError::InvalidKey(format!("not a PKCS#8 Ed25519 private key: {e}")))
    }

    /// PKCS#8 v1 (RFC 8410 without the optional public key), the form every
    /// implementation reads; the secret copy is wiped when it is dropped.
    fn keypair_bytes(&self) -> KeypairBytes {
        KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
    }

    /// The private key as PKCS#8 PEM, in a buffer wiped on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.keypair_bytes()
            .to_pkcs8_pem(Default::default())
            .map_err(|e| CoreError::InvalidKey(format!("cannot encode key: {e}")))
    }

    /// The private key as PKCS#8 DER, in a buffer wiped on drop (for TLS).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.keypair_bytes()
            .to_pkcs8_der()
            .map(|doc| Zeroizing::new(doc.as_bytes().to_vec()))
            .map_err(|e| CoreError::InvalidKey(format!("cannot encode key: {e}")))
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The peer id of this identity.
    pub fn peer_id(&self) -> PeerId {
        self.public_key().peer_id()
    }

    /// An Ed25519 signature over `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.key.sign(data).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(peer_id={})", self.peer_id().short())
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 raw bytes; fails on bytes that are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| CoreError::InvalidKey("not a valid Ed25519 public key".into()))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The peer id this key stands for.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_public_key(&self.to_bytes())
    }

    /// Checks an Ed25519 signature strictly (no malleable or small-order encodings).
    pub fn verify(&self, data: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.0.verify_strict(data, &sig).is_ok() && self.0.verify(data, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(peer_id={})", self.peer_id().short())
    }
}

/// Characters of a public key's text form: 52 of z-base-32 (as pkarr writes keys), which
/// a BEP 44 record is looked up by.
pub const PUBLIC_KEY_TEXT_LEN: usize = 52;

fn z_base32() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("ybndrfg8ejkmcpqxot1uwisza345h769");
    // The alphabet is fixed and valid: building it cannot fail.
    spec.encoding().unwrap_or_else(|_| unreachable!())
}

/// The text form: 52 z-base-32 characters.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&z_base32().encode(&self.to_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = CoreError;

    /// Parses the text form (case-insensitive, surrounding blanks ignored); fails on
    /// another length, a character outside z-base-32, or bytes that are not a curve point.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim().to_ascii_lowercase();
        if text.len() != PUBLIC_KEY_TEXT_LEN {
            return Err(CoreError::InvalidKey(format!(
                "a public key is {PUBLIC_KEY_TEXT_LEN} z-base-32 characters, not {}",
                text.chars().count()
            )));
        }
        let raw = z_base32()
            .decode(text.as_bytes())
            .map_err(|e| CoreError::InvalidKey(format!("not z-base-32: {e}")))?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| CoreError::InvalidKey("a public key is 32 bytes".into()))?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_peer_id() {
        let id = Identity::generate();
        let pem = id.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = Identity::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
    }

    #[test]
    fn signatures_verify_only_for_their_data_and_key() {
        let id = Identity::generate();
        let sig = id.sign(b"hello");
        assert!(id.public_key().verify(b"hello", &sig));
        assert!(!id.public_key().verify(b"hellO", &sig));
        assert!(!Identity::generate().public_key().verify(b"hello", &sig));
    }

    #[test]
    fn the_text_form_round_trips_and_bad_text_is_refused() {
        let key = Identity::generate().public_key();
        let text = key.to_string();
        assert_eq!(text.len(), PUBLIC_KEY_TEXT_LEN);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(
            format!(" {} ", text.to_uppercase())
                .parse::<PublicKey>()
                .unwrap(),
            key
        );
        // The last character carries one bit and four padding bits, which must be zero:
        // 'b' (value 1) sets one of them.
        let padded = format!("{}b", &text[..PUBLIC_KEY_TEXT_LEN - 1]);
        let bad = [
            &text[1..],                      // too short
            &format!("{text}y")[..],         // too long
            &format!("l{}", &text[1..])[..], // 'l' is not in the alphabet
            &padded[..],
        ];
        for b in bad {
            let refused = matches!(b.parse::<PublicKey>(), Err(CoreError::InvalidKey(_)));
            assert!(refused, "{b}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let id = Identity::generate();
        let pem = id.to_pkcs8_pem().unwrap();
        let body: String = pem.lines().nth(1).unwrap().chars().take(16).collect();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&body));
        assert!(shown.contains(&id.peer_id().short()));
    }

    #[test]
    fn garbage_pem_is_an_error() {
        assert!(Identity::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(Identity::from_pkcs8_pem("").is_err());
    }
}
