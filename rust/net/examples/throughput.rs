//! Raw engine throughput: one session on ::1, N MiB over one stream, no Python involved.
//! Usage: cargo run --release -p i6p-net --example throughput -- [MiB]

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let elapsed = i6p_net::loopback::stream_transfer(mib << 20, 1 << 20).await?;
    let secs = elapsed.as_secs_f64();
    println!("{mib} MiB in {secs:.3} s = {:.1} MiB/s", mib as f64 / secs);
    Ok(())
}
