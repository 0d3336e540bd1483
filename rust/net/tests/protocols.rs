//! Protocol handlers on two real nodes on ::1: a handler registered for a stream kind gets
//! the streams of that kind (and only those), a kind without a handler is refused with the
//! named code, and a kind has one handler at most.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use i6p_core::codes;
use i6p_core::kinds::{STREAM_APP, STREAM_BLOBS, STREAM_COORD, STREAM_DIALBACK};
use i6p_core::Identity;
use i6p_net::{NetError, Node, NodeConfig, RecvStream, SendStream, Session};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const ECHO: u8 = 0x42;
const LATE: u8 = 0x43;

fn node() -> Node {
    Node::bind(
        Identity::generate(),
        "[::]:0".parse().unwrap(),
        NodeConfig::default(),
    )
    .unwrap()
}

fn loopback(node: &Node) -> SocketAddr {
    let port = node.local_addr().unwrap().port();
    format!("[::1]:{port}").parse().unwrap()
}

/// A handler that answers `<tag>:<who asked>:<what was sent>` and counts its streams.
fn echo(tag: &'static str, served: Arc<AtomicUsize>) -> impl i6p_net::ProtocolHandler {
    move |session: Session, mut send: SendStream, mut recv: RecvStream| {
        let served = served.clone();
        async move {
            served.fetch_add(1, Ordering::SeqCst);
            let got = recv.read_to_end(1024).await.unwrap();
            let who = session.remote_peer_id().short();
            let reply = format!("{tag}:{who}:{}", String::from_utf8_lossy(&got));
            send.write(Bytes::from(reply)).await.unwrap();
            send.finish().await.unwrap();
        }
    }
}

async fn ask(session: &Session, kind: u8, what: &'static [u8]) -> Result<Bytes, NetError> {
    let (mut send, mut recv) = session.open_protocol_stream(kind).await?;
    send.write(Bytes::from_static(what)).await?;
    send.finish().await?;
    recv.read_to_end(1024).await
}

#[tokio::test]
async fn a_registered_handler_gets_its_kind_and_an_unknown_kind_is_refused_by_name() {
    let (a, b) = (node(), node());
    let echoed = Arc::new(AtomicUsize::new(0));
    b.register_protocol(ECHO, echo("echo", echoed.clone()))
        .unwrap();
    // One handler per kind: neither a second one nor a built-in kind can be taken over.
    for kind in [
        ECHO,
        STREAM_APP,
        STREAM_BLOBS,
        STREAM_COORD,
        STREAM_DIALBACK,
    ] {
        let taken = b.register_protocol(kind, echo("other", Arc::default()));
        assert!(matches!(taken, Err(NetError::Config(_))), "kind {kind}");
    }
    assert_eq!(
        b.protocols().kinds(),
        vec![
            STREAM_APP,
            STREAM_BLOBS,
            STREAM_COORD,
            i6p_core::kinds::STREAM_RELAY,
            STREAM_DIALBACK,
            ECHO
        ]
    );

    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), loopback(&b)), b.accept());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    let reply = ask(&sa, ECHO, b"hi").await.unwrap();
    assert_eq!(reply, format!("echo:{}:hi", a.peer_id().short()));
    assert_eq!(echoed.load(Ordering::SeqCst), 1);

    // A kind nobody registered: reset and stopped with UNKNOWN_STREAM_KIND.
    match ask(&sa, LATE, b"anyone?").await {
        Err(NetError::StreamReset(code)) => {
            assert_eq!(code, u64::from(codes::UNKNOWN_STREAM_KIND))
        }
        other => panic!("expected a reset with UNKNOWN_STREAM_KIND, got {other:?}"),
    }

    // Application streams still go to accept_stream, not to a handler.
    let (mut send, _recv) = sa.open_stream().await.unwrap();
    send.write(Bytes::from_static(b"app")).await.unwrap();
    let (_send, mut recv) = sb.accept_stream().await.unwrap();
    assert_eq!(&recv.read_exact(3).await.unwrap()[..], b"app");
    assert_eq!(echoed.load(Ordering::SeqCst), 1);

    // A handler registered while the session exists serves it from then on.
    let late = Arc::new(AtomicUsize::new(0));
    b.register_protocol(LATE, echo("late", late.clone()))
        .unwrap();
    let reply = ask(&sa, LATE, b"now").await.unwrap();
    assert_eq!(reply, format!("late:{}:now", a.peer_id().short()));
    assert_eq!(late.load(Ordering::SeqCst), 1);

    // Handlers are per node: `a` registered none, so `b`'s streams of that kind are refused.
    match ask(&sb, ECHO, b"back").await {
        Err(NetError::StreamReset(code)) => {
            assert_eq!(code, u64::from(codes::UNKNOWN_STREAM_KIND))
        }
        other => panic!("expected a reset with UNKNOWN_STREAM_KIND, got {other:?}"),
    }
    a.close().await;
    b.close().await;
}
