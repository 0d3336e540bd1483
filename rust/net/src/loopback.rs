//! A reference transfer done entirely inside the engine, for benchmarks: two nodes on ::1,
//! one session, `total` bytes over one stream in `block`-sized writes. The Python benchmarks
//! run it next to the same transfer through the Python API to show what the boundary costs.

use crate::error::Result;
use crate::node::{Node, NodeConfig};
use bytes::Bytes;
use i6p_core::Identity;
use std::time::{Duration, Instant};

/// Moves `total` bytes over one stream between two fresh nodes; returns the time from the
/// first write to the last byte read (the handshake is not included).
pub async fn stream_transfer(total: u64, block: usize) -> Result<Duration> {
    let block = block.max(1);
    let a = Node::bind(
        Identity::generate(),
        ([0u16; 8], 0).into(),
        NodeConfig::default(),
    )?;
    let b = Node::bind(
        Identity::generate(),
        ([0u16; 8], 0).into(),
        NodeConfig::default(),
    )?;
    let addr = ([0, 0, 0, 0, 0, 0, 0, 1u16], b.local_addr()?.port()).into();
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), addr), b.accept());
    let (sa, sb) = (sa?, sb?);
    let data = Bytes::from(vec![0x5a; block]);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let (mut send, _recv) = sa.open_stream().await?;
        let mut left = total;
        while left > 0 {
            let n = left.min(block as u64) as usize;
            send.write(data.slice(..n)).await?;
            left -= n as u64;
        }
        send.finish().await?;
        Ok::<_, crate::NetError>(sa)
    });
    let (_send, mut recv) = sb.accept_stream().await?;
    let mut received = 0u64;
    while let Some(chunk) = recv.read(1 << 20).await? {
        received += chunk.len() as u64;
    }
    let elapsed = start.elapsed();
    let sa = sender
        .await
        .map_err(|e| crate::NetError::Stream(format!("sender task failed: {e}")))??;
    if received != total {
        return Err(crate::NetError::Stream(format!(
            "received {received} of {total} bytes"
        )));
    }
    sa.close(0, "done").await;
    a.close().await;
    b.close().await;
    Ok(elapsed)
}
