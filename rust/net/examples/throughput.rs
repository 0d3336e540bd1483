//! Engine throughput without Python: bare quinn, an I6P stream and a verified fetch, on ::1.
//! Usage: cargo run --release -p i6p-net --example throughput -- [MiB] [DIR]
//! (DIR holds the fetch's files; a tmpfs such as /dev/shm keeps the disk out of the figure.)

use i6p_net::bench;
use i6p_net::fetch::FetchOptions;
use i6p_net::NodeConfig;
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let dir = args.next().unwrap_or_else(|| "/dev/shm".into());
    let only = args.next().unwrap_or_default();
    let run = |what: &str| only.is_empty() || only == what;
    let total = mib << 20;
    let config = NodeConfig::default();
    let report = |what: &str, secs: f64| {
        println!(
            "{what:>12}: {mib} MiB in {secs:.3} s = {:.1} MiB/s",
            mib as f64 / secs
        );
    };
    if run("raw") {
        let secs = bench::raw_quinn_stream(total, 1 << 20, &config).await?;
        report("raw quinn", secs.as_secs_f64());
    }
    if run("stream") {
        let secs = bench::stream_transfer(total, 1 << 20, &config).await?;
        report("i6p stream", secs.as_secs_f64());
    }
    if !run("fetch") {
        return Ok(());
    }
    let src = std::path::Path::new(&dir).join("i6p-throughput-src");
    let dest = std::path::Path::new(&dir).join("i6p-throughput-dest");
    {
        let mut f = std::fs::File::create(&src)?;
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            block
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (i as usize * 31 + j * 7) as u8);
            f.write_all(&block)?;
        }
    }
    let fetched = bench::fetch_transfer(&src, &dest, FetchOptions::default(), &config).await;
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dest);
    report("fetch", fetched?.as_secs_f64());
    Ok(())
}
