//! Providers that misbehave on purpose (`Faults`), on real nodes on ::1: a fetch must end
//! with a clear error instead of waiting on them forever.

#![allow(clippy::unwrap_used)]

use i6p_core::ticket::Ticket;
use i6p_core::Identity;
use i6p_net::blobs::Faults;
use i6p_net::fetch::FecOptions;
use i6p_net::fetch::{fetch_ticket, FetchOptions, Progress, Reconnect};
use i6p_net::{NetError, Node, NodeConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn node() -> Node {
    Node::bind(
        Identity::generate(),
        "[::]:0".parse().unwrap(),
        NodeConfig::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_do_not_hold_off_the_stall_timeout() {
    let dir = std::env::temp_dir().join(format!("i6p-junk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src");
    std::fs::write(&src, vec![7u8; 3 << 20]).unwrap();
    let (provider, fetcher) = (node(), node());
    let blob = provider.store().add_path(&src).unwrap();
    provider.store().set_faults(Faults::JUNK_ONLY);
    let port = provider.local_addr().unwrap().port();
    let ticket = Ticket {
        peer_id: provider.peer_id(),
        addrs: vec![format!("[::1]:{port}").parse().unwrap()],
        hash: blob.hash(),
        size: blob.size(),
        collection: false,
        rendezvous: Vec::new(),
        key: None,
    };
    let stall = Duration::from_secs(2);
    let options = FetchOptions {
        fec: Some(FecOptions::default()),
        stall_timeout: stall,
        reconnect: Reconnect {
            attempts: 0,
            ..Reconnect::default()
        },
        ..FetchOptions::default()
    };
    let start = Instant::now();
    let fetch = fetch_ticket(
        &fetcher,
        &ticket,
        dir.join("dest"),
        options,
        Arc::new(Progress::default()),
    );
    // The provider sends junk every 10 ms for minutes: only the stall timeout ends this.
    let result = tokio::time::timeout(stall * 5, fetch).await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(Err(NetError::Stream(message))) => {
            assert!(message.contains("nothing useful"), "{message}")
        }
        Ok(other) => panic!("expected the stall error, got {other:?}"),
        Err(_) => panic!("the fetch was still waiting after {:?}", stall * 5),
    }
    let took = start.elapsed();
    assert!(took >= stall && took < stall * 3, "{took:?}");
}
