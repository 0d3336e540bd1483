//! Sessions for transfers on two real nodes on ::1: concurrent leases share one dial, the
//! provider never hands such a session to `accept`, and it ends when idle or at node close.

#![allow(clippy::unwrap_used)]

use i6p_core::Identity;
use i6p_net::node::TransferLease;
use i6p_net::{Node, NodeConfig};
use std::net::SocketAddr;
use std::time::Duration;

fn loopback(node: &Node) -> SocketAddr {
    let port = node.local_addr().unwrap().port();
    format!("[::1]:{port}").parse().unwrap()
}

fn node(transfer_idle: Duration) -> Node {
    let config = NodeConfig {
        transfer_idle,
        ..Default::default()
    };
    Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap()
}

/// Polls until the provider holds `n` incoming connections, for at most `within`.
async fn connections_become(provider: &Node, n: usize, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while provider.connection_counts().0 != n {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn concurrent_leases_share_one_dial_and_skip_accept() {
    let provider = node(Duration::from_secs(30));
    let fetcher = node(Duration::from_millis(300));
    let addrs = [loopback(&provider)];
    let leases = five_at_once(&fetcher, &provider, &addrs).await;
    assert_eq!(leases.len(), 5);
    // Five transfers, one dial: the provider let one connection in.
    assert_eq!(provider.admission().admitted, 1);
    assert_eq!(fetcher.transfer_sessions(), 1);
    let accepted = tokio::time::timeout(Duration::from_millis(500), provider.accept()).await;
    assert!(accepted.is_err(), "a transfer session reached accept");
    // Held by a transfer, it stays past the idle grace; once released, it goes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(leases[0].is_usable());
    drop(leases);
    assert!(connections_become(&provider, 0, Duration::from_secs(10)).await);
    assert_eq!(fetcher.transfer_sessions(), 0);
}

#[tokio::test]
async fn node_close_ends_its_transfer_sessions() {
    let provider = node(Duration::from_secs(30));
    let fetcher = node(Duration::from_secs(30));
    let lease = fetcher
        .transfer_session(provider.peer_id(), &[loopback(&provider)])
        .await
        .unwrap();
    drop(lease);
    assert!(connections_become(&provider, 1, Duration::from_secs(5)).await);
    fetcher.close().await;
    assert!(connections_become(&provider, 0, Duration::from_secs(5)).await);
    assert_eq!(fetcher.transfer_sessions(), 0);
}

/// Five leases asked for at once.
async fn five_at_once(fetcher: &Node, provider: &Node, addrs: &[SocketAddr]) -> Vec<TransferLease> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (fetcher, peer, addrs) = (fetcher.clone(), provider.peer_id(), addrs.to_vec());
        set.spawn(async move { fetcher.transfer_session(peer, &addrs).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(lease) = set.join_next().await {
        out.push(lease.unwrap());
    }
    out
}
