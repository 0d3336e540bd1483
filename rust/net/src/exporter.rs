//! The listener's HELLO binding at 0.5-RTT.
//!
//! rustls 0.23 derives the exporter master secret when the server sends its Finished, but
//! answers `export_keying_material` only once the client's Finished has been read (its server
//! states before that return `HandshakeNotComplete`). So that a listener can sign its HELLO in
//! its first flight, each incoming connection's TLS config gets a [`KeyLog`] that keeps that
//! one secret (and nothing else), and [`EarlyExporter::binding`] derives the TLS exporter from
//! it as RFC 8446 §7.5 defines, with ring's HKDF.
//!
//! Invariant: the value is only ever used to *sign* our own HELLO. Nothing from the peer is
//! checked against it: the peer's HELLO is verified with rustls's own exporter once the
//! handshake is complete, and the listener checks there that both values agree.

use i6p_core::{EXPORTER_LABEL, EXPORTER_LEN};
use ring::{digest, hkdf};
use rustls::KeyLog;
use std::sync::{Arc, Mutex};

/// The key-log label under which rustls reports the exporter master secret.
const EXPORTER_SECRET: &str = "EXPORTER_SECRET";

/// Keeps the exporter master secret of one connection's handshake.
#[derive(Default)]
pub(crate) struct EarlyExporter {
    secret: Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for EarlyExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.write_str("EarlyExporter")
    }
}

impl KeyLog for EarlyExporter {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == EXPORTER_SECRET {
            if let Ok(mut g) = self.secret.lock() {
                *g = Some(secret.to_vec());
            }
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == EXPORTER_SECRET
    }
}

impl EarlyExporter {
    /// A capture for one connection's TLS config.
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The HELLO binding (label [`EXPORTER_LABEL`], empty context, 32 bytes), once rustls has
    /// derived the secret; `None` before that, or for a hash this code does not know. The
    /// secret is given up here: a second call returns `None`.
    pub(crate) fn binding(&self) -> Option<[u8; EXPORTER_LEN]> {
        let secret = self.secret.lock().ok()?.take()?;
        // The secret is as long as the cipher suite's hash.
        let (alg, hash) = match secret.len() {
            32 => (hkdf::HKDF_SHA256, &digest::SHA256),
            48 => (hkdf::HKDF_SHA384, &digest::SHA384),
            _ => return None,
        };
        let empty_hash = digest::digest(hash, b"");
        // Derive-Secret(secret, label, "") then HKDF-Expand-Label(., "exporter", Hash(""), L).
        let mut derived = vec![0u8; secret.len()];
        expand_label(
            alg,
            &secret,
            EXPORTER_LABEL,
            empty_hash.as_ref(),
            &mut derived,
        )?;
        let mut out = [0u8; EXPORTER_LEN];
        expand_label(alg, &derived, b"exporter", empty_hash.as_ref(), &mut out)?;
        Some(out)
    }
}

/// HKDF-Expand-Label of RFC 8446 §7.1 into `out` (at most 255 bytes of label and context).
fn expand_label(
    alg: hkdf::Algorithm,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Option<()> {
    const PREFIX: &[u8] = b"tls13 ";
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(PREFIX.len() + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    let info = [&len[..], &label_len, PREFIX, label, &context_len, context];
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}
