//! Two real nodes on ::1: handshake, identity checks, streams both ways, ping, close.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use i6p_core::Identity;
use i6p_net::{NetError, Node, NodeConfig};
use std::net::SocketAddr;

fn loopback(node: &Node) -> SocketAddr {
    let port = node.local_addr().unwrap().port();
    format!("[::1]:{port}").parse().unwrap()
}

fn node_with(caps: &[(&str, &str)]) -> Node {
    let config = NodeConfig {
        capabilities: caps
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    Node::bind(Identity::generate(), "[::]:0".parse().unwrap(), config).unwrap()
}

#[tokio::test]
async fn sessions_are_symmetric_and_authenticated() {
    let a = node_with(&[("role", "a")]);
    let b = node_with(&[("role", "b")]);
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), loopback(&b)), b.accept());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert_eq!(sa.remote_peer_id(), b.peer_id());
    assert_eq!(sb.remote_peer_id(), a.peer_id());
    // Every node also coordinates and offers dial-back, and says so.
    let coordinate = ("coordinate".to_string(), "1".to_string());
    let dialback = ("dialback".to_string(), "1".to_string());
    assert_eq!(
        sa.remote_capabilities(),
        vec![
            ("role".into(), "b".into()),
            dialback.clone(),
            coordinate.clone()
        ]
    );
    assert_eq!(
        sb.remote_capabilities(),
        vec![("role".into(), "a".into()), dialback, coordinate]
    );

    // The listener opens a stream to the dialer.
    let (mut send, mut recv) = sb.open_stream().await.unwrap();
    send.write(Bytes::from_static(b"from b")).await.unwrap();
    let (mut send2, mut recv2) = sa.accept_stream().await.unwrap();
    assert_eq!(&recv2.read_exact(6).await.unwrap()[..], b"from b");
    send2.write(Bytes::from_static(b"back")).await.unwrap();
    send2.finish().await.unwrap();
    assert_eq!(&recv.read_to_end(100).await.unwrap()[..], b"back");
    send.finish().await.unwrap();

    assert!(sa.ping().await.unwrap().as_secs() < 5);
    assert!(sb.ping().await.unwrap().as_secs() < 5);

    sa.close(42, "done here").await;
    match sb.closed().await {
        NetError::ConnectionLost {
            code,
            reason,
            by_peer,
        } => {
            assert_eq!((code, reason.as_str(), by_peer), (42, "done here", true));
        }
        other => panic!("unexpected {other:?}"),
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn dialing_the_wrong_peer_id_fails_in_the_handshake() {
    let a = node_with(&[]);
    let b = node_with(&[]);
    let wrong = Identity::generate().peer_id();
    match a.connect(wrong, loopback(&b)).await {
        Err(NetError::PeerIdMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, b.peer_id());
        }
        other => panic!("unexpected {other:?}"),
    }
    // The node still serves honest dialers.
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), loopback(&b)), b.accept());
    assert_eq!(sa.unwrap().remote_peer_id(), b.peer_id());
    assert_eq!(sb.unwrap().remote_peer_id(), a.peer_id());
}

#[tokio::test]
async fn ipv4_peers_reach_a_dual_stack_node() {
    let a = node_with(&[]);
    let b = node_with(&[]);
    let port = b.local_addr().unwrap().port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), v4), b.accept());
    let sb = sb.unwrap();
    assert_eq!(sa.unwrap().remote_addr(), v4);
    assert!(sb.remote_addr().is_ipv4());
}
