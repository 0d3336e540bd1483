//! Raw engine throughput: one session on ::1, N bytes over one stream, no Python involved.
//! Usage: cargo run --release -p i6p-net --example throughput -- [MiB]

use bytes::Bytes;
use i6p_core::Identity;
use i6p_net::{Node, NodeConfig};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let a = Node::bind(
        Identity::generate(),
        "[::]:0".parse()?,
        NodeConfig::default(),
    )?;
    let b = Node::bind(
        Identity::generate(),
        "[::]:0".parse()?,
        NodeConfig::default(),
    )?;
    let addr = format!("[::1]:{}", b.local_addr()?.port()).parse()?;
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), addr), b.accept());
    let (sa, sb) = (sa?, sb?);
    let block = Bytes::from(vec![7u8; 1 << 20]);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let (mut send, _recv) = sa.open_stream().await?;
        for _ in 0..mib {
            send.write(block.clone()).await?;
        }
        send.finish().await?;
        Ok::<_, i6p_net::NetError>(sa)
    });
    let (_send, mut recv) = sb.accept_stream().await?;
    let mut total = 0usize;
    while let Some(chunk) = recv.read(1 << 20).await? {
        total += chunk.len();
    }
    let secs = start.elapsed().as_secs_f64();
    let _sa = sender.await??;
    println!(
        "{total} bytes in {secs:.3} s = {:.1} MiB/s",
        total as f64 / secs / (1 << 20) as f64
    );
    Ok(())
}
