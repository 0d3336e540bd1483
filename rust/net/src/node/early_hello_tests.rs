//! A dialer checks a HELLO from the listener's HELLO stream exactly as one from the control
//! stream: a listener (here a bare quinn endpoint with a node's TLS config) that signs it for
//! the wrong role or over another binding is refused, and a second, different HELLO on the
//! control stream ends the session.

use super::{Node, NodeConfig};
use crate::control::write_frame;
use crate::error::NetError;
use crate::resume::ServerSessions;
use crate::tls::{server_crypto, TlsIdentity};
use i6p_core::{codes, FrameType, Hello, Identity, Role, EXPORTER_LABEL, EXPORTER_LEN};
use quinn::crypto::rustls::QuicServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the fake listener puts on its HELLO stream, and on the control stream after it.
#[derive(Clone, Copy)]
enum Forge {
    Honest,
    WrongRole,
    WrongBinding,
    DifferentCopy,
}

fn hello(timestamp_ms: u64) -> Hello {
    Hello {
        version: i6p_core::PROTOCOL_VERSION,
        timestamp_ms,
        capabilities: vec![("fake".into(), "1".into())],
        listen_addrs: Vec::new(),
        transfer_only: false,
    }
}

/// A listener that completes the TLS handshake, sends one HELLO stream as `forge` says and
/// returns how its connection ended.
async fn fake_listener(forge: Forge) -> (SocketAddr, Identity, tokio::task::JoinHandle<u64>) {
    let id = Identity::generate();
    let tls = TlsIdentity::new(&id).unwrap();
    let crypto = server_crypto(&tls, Arc::new(ServerSessions::in_memory())).unwrap();
    let config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto).unwrap()));
    let endpoint = quinn::Endpoint::server(config, "[::1]:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let signer = id.clone();
    let task = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let mut binding = [0u8; EXPORTER_LEN];
        conn.export_keying_material(&mut binding, EXPORTER_LABEL, b"")
            .unwrap();
        let (role, bound) = match forge {
            Forge::WrongRole => (Role::Dialer, binding),
            Forge::WrongBinding => (Role::Listener, [7u8; EXPORTER_LEN]),
            Forge::Honest | Forge::DifferentCopy => (Role::Listener, binding),
        };
        let payload = hello(1).sign(&signer, role, &bound).unwrap();
        let mut send = conn.open_uni().await.unwrap();
        write_frame(&mut send, FrameType::Hello, &payload)
            .await
            .unwrap();
        send.finish().unwrap();
        let (mut control, _recv) = conn.accept_bi().await.unwrap();
        let copy = match forge {
            Forge::DifferentCopy => hello(2).sign(&signer, Role::Listener, &binding).unwrap(),
            _ => payload,
        };
        write_frame(&mut control, FrameType::Hello, &copy)
            .await
            .unwrap();
        match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
            _ => u64::MAX,
        }
    });
    (addr, id, task)
}

fn dialer() -> Node {
    let config = NodeConfig {
        handshake_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap()
}

#[tokio::test]
async fn an_honest_hello_stream_establishes_the_session() {
    let (addr, id, task) = fake_listener(Forge::Honest).await;
    let node = dialer();
    let session = node.connect(id.peer_id(), addr).await.unwrap();
    assert_eq!(
        session.remote_capabilities(),
        vec![("fake".into(), "1".into())]
    );
    session.close(0, "done").await;
    assert_eq!(task.await.unwrap(), 0);
}

#[tokio::test]
async fn a_hello_stream_signed_for_the_wrong_role_or_binding_is_refused() {
    for forge in [Forge::WrongRole, Forge::WrongBinding] {
        let (addr, id, task) = fake_listener(forge).await;
        let node = dialer();
        match node.connect(id.peer_id(), addr).await {
            Err(NetError::BadFrame(e)) => assert!(e.to_string().contains("signature"), "{e}"),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
        assert_eq!(task.await.unwrap(), u64::from(codes::PROTOCOL_ERROR));
    }
}

#[tokio::test]
async fn a_different_hello_on_the_control_stream_ends_the_session() {
    let (addr, id, task) = fake_listener(Forge::DifferentCopy).await;
    let node = dialer();
    let session = node.connect(id.peer_id(), addr).await.unwrap();
    // Whichever copy the dialer reads first, the other must match: bounded waits.
    let bound = Duration::from_secs(20);
    let code = tokio::time::timeout(bound, task).await.unwrap().unwrap();
    assert_eq!(code, u64::from(codes::PROTOCOL_ERROR));
    match tokio::time::timeout(bound, session.closed()).await.unwrap() {
        NetError::ConnectionLost { code, reason, .. } => {
            assert_eq!(code, u64::from(codes::PROTOCOL_ERROR));
            assert!(reason.contains("second, different hello"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
