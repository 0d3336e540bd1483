//! `i6p-impair`: a UDP relay that emulates a long, lossy or narrow link between two peers on
//! loopback, for tests and benchmarks (the kernel here has no netem).
//!
//! `i6p-impair --upstream ADDR [options]` relays until SIGTERM/SIGINT or `--max-seconds`;
//! `i6p-impair bench` measures the relay's own capacity. Test tooling, not product code: the
//! protocol under test never depends on it.

mod args;
mod bench;
mod error;
mod link;
mod relay;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::args::{Command, RelayOptions, USAGE};
use crate::error::{Error, Result};
use crate::relay::Relay;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args::parse(&argv) {
        Ok(Command::Help) => print_line(USAGE),
        Ok(Command::Relay(options)) => relay(options),
        Ok(Command::Bench(options)) => bench::run(options),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(message)) => {
            eprintln!("i6p-impair: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("i6p-impair: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the relay until signalled or out of time, then prints its counters.
fn relay(options: RelayOptions) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let relay = Relay::bind(options.listen, options.upstream)?;
    let listen = relay.listen_addr()?;
    let started = Instant::now();
    let running = relay.spawn(options.up, options.down, options.seed, Arc::clone(&stop))?;
    print_line(&format!("LISTEN {listen}"))?;

    let deadline = options.max_seconds.map(|limit| started + limit);
    while !stop.load(Ordering::Relaxed)
        && !running.is_finished()
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let (up, down) = running.join()?;
    print_line(&format!(
        "{{\"up\":{},\"down\":{},\"seconds\":{:.3}}}",
        up.to_json(),
        down.to_json(),
        started.elapsed().as_secs_f64()
    ))
}

/// Writes a line to stdout and flushes it, for a reader waiting on a pipe.
fn print_line(line: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}
