//! The HELLO message: the first control frame in each direction.
//!
//! A HELLO carries the protocol version, capabilities and listen addresses, and is signed by
//! the sender's identity key over a secret exported from this connection's TLS session. A HELLO
//! recorded on one connection therefore fails verification on any other, and the signature
//! binds the application-level identity to the channel TLS authenticated.

use crate::error::{CoreError, Result};
use crate::identity::{Identity, PublicKey};
use crate::wire::{put_socket_addr, put_string, Reader};
use std::net::SocketAddr;

/// The control protocol version carried in HELLO.
pub const PROTOCOL_VERSION: u16 = 1;

/// Label for the TLS exporter (RFC 8446 §7.5) that HELLO signatures cover.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-i6p-hello";

/// Bytes taken from the TLS exporter.
pub const EXPORTER_LEN: usize = 32;

/// Domain-separation prefix of the signed message.
const SIGNING_CONTEXT: &[u8] = b"i6p/1 hello\0";

/// At most this many capabilities.
pub const MAX_CAPABILITIES: usize = 64;
/// A capability name is 1..=64 bytes of UTF-8.
pub const MAX_CAPABILITY_KEY: usize = 64;
/// A capability value is at most 1024 bytes of UTF-8.
pub const MAX_CAPABILITY_VALUE: usize = 1024;
/// At most this many listen addresses.
pub const MAX_LISTEN_ADDRS: usize = 16;

/// The optional last field of the body: the dialer opened the session for blob transfers
/// only, so the listener serves them but does not hand the session to its application.
/// Absent (or 0) means an application session, as every HELLO before this field was.
pub const PURPOSE_TRANSFERS: u8 = 1;

const SIGNATURE_LEN: usize = 64;

/// Which end of the connection signed a HELLO; part of the signed message so that a HELLO
/// cannot be reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// The side that opened the connection.
    Dialer = 0,
    /// The side that accepted it.
    Listener = 1,
}

/// The contents of a HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Control protocol version of the sender.
    pub version: u16,
    /// Sender's clock, milliseconds since the Unix epoch (informational).
    pub timestamp_ms: u64,
    /// Free-form capabilities: name -> value, in the sender's order.
    pub capabilities: Vec<(String, String)>,
    /// Addresses the sender accepts connections on.
    pub listen_addrs: Vec<SocketAddr>,
    /// The dialer opened this session for blob transfers only (never set by a listener).
    pub transfer_only: bool,
}

impl Hello {
    /// Checks the limits that the wire format imposes.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| CoreError::Malformed {
            what: "hello",
            detail,
        };
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(bad(format!("more than {MAX_CAPABILITIES} capabilities")));
        }
        for (k, v) in &self.capabilities {
            if k.is_empty() || k.len() > MAX_CAPABILITY_KEY {
                return Err(bad(format!(
                    "capability name must be 1..={MAX_CAPABILITY_KEY} bytes"
                )));
            }
            if v.len() > MAX_CAPABILITY_VALUE {
                return Err(bad(format!(
                    "capability {k:?} value exceeds {MAX_CAPABILITY_VALUE} bytes"
                )));
            }
        }
        if self.listen_addrs.len() > MAX_LISTEN_ADDRS {
            return Err(bad(format!(
                "more than {MAX_LISTEN_ADDRS} listen addresses"
            )));
        }
        Ok(())
    }

    pub(crate) fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.push(self.capabilities.len() as u8);
        for (k, v) in &self.capabilities {
            put_string(&mut out, k, 1);
            put_string(&mut out, v, 2);
        }
        out.push(self.listen_addrs.len() as u8);
        for addr in &self.listen_addrs {
            put_socket_addr(&mut out, addr);
        }
        // Written only when set, so an application HELLO is what it always was.
        if self.transfer_only {
            out.push(PURPOSE_TRANSFERS);
        }
        out
    }

    /// Encodes and signs the HELLO payload for a connection whose TLS exporter gave `binding`.
    pub fn sign(
        &self,
        identity: &Identity,
        role: Role,
        binding: &[u8; EXPORTER_LEN],
    ) -> Result<Vec<u8>> {
        self.validate()?;
        let mut payload = self.encode_body();
        let signature = identity.sign(&signed_message(role, binding, &payload));
        payload.extend_from_slice(&signature);
        Ok(payload)
    }

    /// Decodes a HELLO payload and verifies its signature against the key TLS authenticated
    /// for the peer, the peer's role and this connection's exporter secret.
    pub fn verify(
        payload: &[u8],
        signer: &PublicKey,
        role: Role,
        binding: &[u8; EXPORTER_LEN],
    ) -> Result<Self> {
        if payload.len() < SIGNATURE_LEN {
            return Err(CoreError::Truncated("hello"));
        }
        let (body, sig) = payload.split_at(payload.len() - SIGNATURE_LEN);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(sig);
        // Check the signature before parsing the body: an unauthenticated body is never parsed.
        if !signer.verify(&signed_message(role, binding, body), &signature) {
            return Err(CoreError::BadSignature("hello"));
        }
        // The version comes first and decides the layout of the rest.
        if let [hi, lo, ..] = *body {
            let version = u16::from_be_bytes([hi, lo]);
            if version != PROTOCOL_VERSION {
                return Err(CoreError::UnsupportedVersion(version));
            }
        }
        Self::decode_body(body)
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "hello");
        let version = r.u16()?;
        let timestamp_ms = r.u64()?;
        let n_caps = usize::from(r.u8()?);
        if n_caps > MAX_CAPABILITIES {
            return Err(r.malformed(format!("{n_caps} capabilities exceed {MAX_CAPABILITIES}")));
        }
        let mut capabilities = Vec::with_capacity(n_caps);
        for _ in 0..n_caps {
            let k = r.string(1, MAX_CAPABILITY_KEY)?;
            let v = r.string(2, MAX_CAPABILITY_VALUE)?;
            capabilities.push((k, v));
        }
        let n_addrs = usize::from(r.u8()?);
        if n_addrs > MAX_LISTEN_ADDRS {
            return Err(r.malformed(format!("{n_addrs} addresses exceed {MAX_LISTEN_ADDRS}")));
        }
        let mut listen_addrs = Vec::with_capacity(n_addrs);
        for _ in 0..n_addrs {
            listen_addrs.push(r.socket_addr()?);
        }
        let transfer_only = match r.rest() {
            [] | [0] => false,
            [PURPOSE_TRANSFERS] => true,
            [other] => {
                return Err(CoreError::Malformed {
                    what: "hello",
                    detail: format!("unknown session purpose {other}"),
                })
            }
            more => {
                return Err(CoreError::Malformed {
                    what: "hello",
                    detail: format!("{} trailing bytes", more.len() - 1),
                })
            }
        };
        let hello = Self {
            version,
            timestamp_ms,
            capabilities,
            listen_addrs,
            transfer_only,
        };
        hello.validate()?;
        Ok(hello)
    }
}

fn signed_message(role: Role, binding: &[u8; EXPORTER_LEN], body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + 1 + EXPORTER_LEN + body.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.push(role as u8);
    msg.extend_from_slice(binding);
    msg.extend_from_slice(body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            timestamp_ms: 1_700_000_000_000,
            capabilities: vec![
                ("blobs".into(), "1".into()),
                ("name".into(), "ünïcode".into()),
            ],
            listen_addrs: vec![
                "[::1]:4433".parse().unwrap(),
                "127.0.0.1:9".parse().unwrap(),
                "[fe80::1%7]:5".parse().unwrap(),
            ],
            transfer_only: false,
        }
    }

    #[test]
    fn round_trip() {
        let id = Identity::generate();
        let binding = [9u8; 32];
        let payload = sample().sign(&id, Role::Dialer, &binding).unwrap();
        let back = Hello::verify(&payload, &id.public_key(), Role::Dialer, &binding).unwrap();
        assert_eq!(back, sample());
        assert_eq!(back.listen_addrs[2].to_string(), "[fe80::1%7]:5");
    }

    #[test]
    fn other_channel_role_or_key_is_rejected() {
        let id = Identity::generate();
        let payload = sample().sign(&id, Role::Dialer, &[1; 32]).unwrap();
        let bad_sig = |r: Result<Hello>| matches!(r, Err(CoreError::BadSignature(_)));
        assert!(bad_sig(Hello::verify(
            &payload,
            &id.public_key(),
            Role::Dialer,
            &[2; 32]
        )));
        assert!(bad_sig(Hello::verify(
            &payload,
            &id.public_key(),
            Role::Listener,
            &[1; 32]
        )));
        let other = Identity::generate();
        assert!(bad_sig(Hello::verify(
            &payload,
            &other.public_key(),
            Role::Dialer,
            &[1; 32]
        )));
        let mut flipped = payload.clone();
        flipped[3] ^= 1;
        assert!(bad_sig(Hello::verify(
            &flipped,
            &id.public_key(),
            Role::Dialer,
            &[1; 32]
        )));
        assert!(Hello::verify(&payload[..10], &id.public_key(), Role::Dialer, &[1; 32]).is_err());
    }

    #[test]
    fn purpose_is_optional_and_bounded() {
        let id = Identity::generate();
        let key = id.public_key();
        let check = |body: &[u8]| {
            let mut payload = body.to_vec();
            payload.extend_from_slice(&id.sign(&signed_message(Role::Dialer, &[5; 32], body)));
            Hello::verify(&payload, &key, Role::Dialer, &[5; 32])
        };
        let transfers = Hello {
            transfer_only: true,
            ..sample()
        };
        let body = transfers.encode_body();
        assert_eq!(body.len(), sample().encode_body().len() + 1);
        assert_eq!(check(&body).unwrap(), transfers);
        let mut zero = sample().encode_body();
        zero.push(0);
        assert_eq!(check(&zero).unwrap(), sample());
        let mut unknown = sample().encode_body();
        unknown.push(2);
        assert!(check(&unknown).is_err());
        let mut long = body.clone();
        long.push(1);
        assert!(check(&long).is_err());
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let id = Identity::generate();
        let mut h = sample();
        h.capabilities = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(h.sign(&id, Role::Dialer, &[0; 32]).is_err());
        let mut h = sample();
        h.capabilities = vec![(String::new(), "v".into())];
        assert!(h.sign(&id, Role::Dialer, &[0; 32]).is_err());
    }

    #[test]
    fn signed_garbage_body_is_malformed_not_a_panic() {
        // Bodies that verify but do not parse: every prefix of a real body, signed.
        let id = Identity::generate();
        let body = sample().encode_body();
        for cut in 0..body.len() {
            let mut payload = body[..cut].to_vec();
            payload.extend_from_slice(&id.sign(&signed_message(
                Role::Listener,
                &[3; 32],
                &body[..cut],
            )));
            assert!(Hello::verify(&payload, &id.public_key(), Role::Listener, &[3; 32]).is_err());
        }
    }
}
