//! TLS 1.3 identity binding.
//!
//! Each node presents a self-signed certificate whose key is its Ed25519 identity key. There is
//! no certificate authority: a certificate is trusted exactly when its key hashes to the PeerId
//! the dialer asked for, and the TLS handshake signature (checked by rustls with that key)
//! proves possession. Both directions are authenticated; the listener accepts any valid
//! Ed25519 certificate and learns the dialer's PeerId from it.

use crate::error::{NetError, Result};
use i6p_core::{Identity, PeerId, PublicKey, ALPN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The certificate and key a node presents in every handshake.
pub(crate) struct TlsIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TlsIdentity {
    /// A fresh self-signed certificate for `identity`.
    pub(crate) fn new(identity: &Identity) -> Result<Self> {
        let der = identity.to_pkcs8_der()?;
        let key = PrivatePkcs8KeyDer::from(der.to_vec());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)
            .map_err(|e| NetError::Tls(format!("identity key unusable for tls: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec!["i6p".to_string()])
            .map_err(|e| NetError::Tls(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, identity.peer_id().to_string());
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| NetError::Tls(format!("cannot build certificate: {e}")))?;
        Ok(Self {
            cert: cert.der().clone(),
            key,
        })
    }

    fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PeerId and key of a peer's certificate; fails unless its key is Ed25519.
pub fn peer_of_certificate(cert: &CertificateDer<'_>) -> Result<(PeerId, PublicKey)> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| NetError::Tls(format!("unparsable peer certificate: {e}")))?;
    let spki = parsed.subject_public_key_info();
    let raw = spki.as_ref();
    let key: [u8; 32] = raw
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| NetError::Tls("peer certificate key is not Ed25519".into()))?;
    let key = PublicKey::from_bytes(&key)?;
    Ok((key.peer_id(), key))
}

/// Checks a TLS 1.3 handshake signature with the certificate's key; Ed25519 only.
fn verify_signature(
    algs: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
}

/// Dialer side, one per node: accepts the server certificate only if its key hashes to the
/// PeerId named in the dial's server name (see [`crate::resume::dial_name`]), and notes which
/// peer answered each dial. rustls calls it on full handshakes only; a resumed one is checked
/// by the ticket, which only the peer that proved that PeerId before can use.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    algs: WebPkiSupportedAlgorithms,
    /// Dial number -> the peer whose certificate that dial saw.
    seen: Mutex<HashMap<u64, PeerId>>,
}

/// Dials in progress at once whose outcome is kept; older notes are dropped past this.
const MAX_SEEN: usize = 4096;

impl PeerVerifier {
    /// The peer whose certificate dial `dial` verified, if its handshake was a full one.
    pub(crate) fn take_seen(&self, dial: u64) -> Option<PeerId> {
        self.seen.lock().ok()?.remove(&dial)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let (expected, dial) = crate::resume::parse_dial_name(server_name).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        )?;
        let (peer, _) = peer_of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= MAX_SEEN {
                seen.clear();
            }
            seen.insert(dial, peer);
        }
        if peer != expected {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Listener side: requires a client certificate with an Ed25519 key; any peer may connect.
#[derive(Debug)]
struct AnyPeerVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyPeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        peer_of_certificate(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The rustls server configuration of a node: TLS 1.3 only, ALPN `i6p/1`, mutual auth,
/// single-use resumption tickets from `sessions`, and 0-RTT (which QUIC requires to be offered
/// as `u32::MAX`; what early data may do is decided per request, see `session.rs`).
pub(crate) fn server_crypto(
    identity: &TlsIdentity,
    sessions: Arc<crate::resume::ServerSessions>,
) -> Result<rustls::ServerConfig> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let (chain, key) = identity.chain();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyPeerVerifier { algs }))
        .with_single_cert(chain, key)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = sessions;
    config.max_early_data_size = u32::MAX;
    Ok(config)
}

/// The rustls client configuration of a node, shared by all its dials (rustls resumes a
/// session only with the verifier and client key that made it).
pub(crate) fn client_crypto(
    identity: &TlsIdentity,
    sessions: Arc<crate::resume::PeerSessions>,
) -> Result<(rustls::ClientConfig, Arc<PeerVerifier>)> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let (chain, key) = identity.chain();
    let verifier = Arc::new(PeerVerifier {
        algs,
        seen: Mutex::new(HashMap::new()),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(chain, key)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // The server name names the PeerId we require; it is not sent on the wire.
    config.enable_sni = false;
    config.resumption = rustls::client::Resumption::store(sessions);
    config.enable_early_data = true;
    Ok((config, verifier))
}

/// The PeerId and key of the peer of an established connection.
pub(crate) fn peer_of_connection(conn: &quinn::Connection) -> Result<(PeerId, PublicKey)> {
    let identity = conn
        .peer_identity()
        .ok_or_else(|| NetError::Tls("peer presented no certificate".into()))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| NetError::Tls("unexpected peer identity type".into()))?;
    let cert = chain
        .first()
        .ok_or_else(|| NetError::Tls("peer presented an empty certificate chain".into()))?;
    peer_of_certificate(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::EarlyExporter;
    use crate::resume::{dial_name, PeerSessions, ServerSessions};
    use i6p_core::{EXPORTER_LABEL, EXPORTER_LEN};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    #[test]
    fn certificate_carries_the_identity_key() {
        let id = Identity::generate();
        let tls = TlsIdentity::new(&id).unwrap();
        let (peer, key) = peer_of_certificate(&tls.cert).unwrap();
        assert_eq!(peer, id.peer_id());
        assert_eq!(key.to_bytes(), id.public_key().to_bytes());
    }

    #[test]
    fn garbage_certificates_are_errors() {
        assert!(peer_of_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        assert!(peer_of_certificate(&CertificateDer::from(Vec::new())).is_err());
    }

    /// Moves what `from` has to send into `to`.
    fn pass(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).unwrap();
        }
        to.process_new_packets().unwrap();
    }

    #[test]
    fn the_early_binding_is_the_exporter_rustls_gives_after_the_handshake() {
        let (server_id, client_id) = (Identity::generate(), Identity::generate());
        let sessions = Arc::new(ServerSessions::in_memory());
        let mut server_tls =
            server_crypto(&TlsIdentity::new(&server_id).unwrap(), sessions).unwrap();
        let early = EarlyExporter::new();
        server_tls.key_log = early.clone();
        let client_tls = client_crypto(
            &TlsIdentity::new(&client_id).unwrap(),
            Arc::new(PeerSessions::default()),
        )
        .unwrap()
        .0;
        let name = ServerName::try_from(dial_name(&server_id.peer_id(), 1)).unwrap();
        let mut client = ClientConnection::new(Arc::new(client_tls), name).unwrap();
        let mut server = ServerConnection::new(Arc::new(server_tls)).unwrap();
        assert!(early.binding().is_none(), "nothing before the ClientHello");
        pass(&mut client, &mut server);
        // The server has sent its Finished, not read the client's: rustls will not export yet,
        // the captured secret already gives the value.
        let mut out = [0u8; EXPORTER_LEN];
        assert!(server
            .export_keying_material(&mut out, EXPORTER_LABEL, Some(b""))
            .is_err());
        let at_half_rtt = early
            .binding()
            .expect("exporter secret after the server's flight");
        assert!(early.binding().is_none(), "the secret is not kept");
        pass(&mut server, &mut client);
        pass(&mut client, &mut server);
        assert!(!server.is_handshaking() && !client.is_handshaking());
        let mut theirs = [0u8; EXPORTER_LEN];
        client
            .export_keying_material(&mut theirs, EXPORTER_LABEL, Some(b""))
            .unwrap();
        server
            .export_keying_material(&mut out, EXPORTER_LABEL, Some(b""))
            .unwrap();
        assert_eq!(at_half_rtt, out);
        assert_eq!(at_half_rtt, theirs);
        assert_eq!(format!("{early:?}"), "EarlyExporter");
    }
}
