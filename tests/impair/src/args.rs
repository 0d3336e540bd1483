//! The command line: `i6p-impair [relay options]` or `i6p-impair bench [bench options]`.
//!
//! Link options apply to both directions; an `up-` or `down-` prefix sets one direction only
//! and wins over the plain form whatever the order.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::link::LinkConfig;

/// What `--help` prints.
pub const USAGE: &str = "\
usage: i6p-impair --upstream ADDR [--listen ADDR] [link options] [--seed N] [--max-seconds S]
       i6p-impair bench [--bytes N] [--datagram N] [--window N] [link options] [--seed N]

relay: datagrams from a client to --listen (default [::1]:0) go to --upstream from a second
socket; datagrams from the upstream go back to the latest client. Prints `LISTEN <addr>` on
start, and a JSON line of counters on SIGTERM/SIGINT or after --max-seconds.

bench: runs a relay in-process and pushes --bytes (default 1 GiB) through it in --datagram-byte
datagrams (default 1200) to a sink, then prints a JSON line with the delivered rate.

link options (both directions; prefix with up- or down- for one direction only):
  --delay-ms F      one-way delay (the round trip gets twice that)
  --jitter-ms F     uniform extra delay in [0, F); never reorders
  --loss P          independent drop probability
  --reorder P       probability a datagram is held back by --reorder-ms so later ones pass it
  --reorder-ms F    how long a reordered datagram is held back (default 2)
  --rate B          bottleneck in bytes per second
  --queue-bytes N   bottleneck backlog before drop-tail (default rate x 50 ms, at least 16 KiB)";

/// A whole run's instructions.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print the usage and exit.
    Help,
    /// Run a relay until signalled or out of time.
    Relay(RelayOptions),
    /// Measure the relay's capacity in-process.
    Bench(BenchOptions),
}

/// Settings of a relay run.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayOptions {
    /// Address the client sends to.
    pub listen: SocketAddr,
    /// Address the client's datagrams go to.
    pub upstream: SocketAddr,
    /// The client-to-upstream direction.
    pub up: LinkConfig,
    /// The upstream-to-client direction.
    pub down: LinkConfig,
    /// Seed of the random draws.
    pub seed: u64,
    /// When to stop on its own.
    pub max_seconds: Option<Duration>,
}

/// Settings of a bench run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Bytes to push through the relay.
    pub bytes: u64,
    /// Size of each datagram.
    pub datagram: usize,
    /// Bytes the sender keeps in flight; `None` to derive it from the delay.
    pub window: Option<u64>,
    /// The sender-to-sink direction.
    pub up: LinkConfig,
    /// The other direction (idle in the bench).
    pub down: LinkConfig,
    /// Seed of the random draws.
    pub seed: u64,
    /// Bound on the whole run.
    pub max_seconds: Duration,
}

/// Link settings as given, before the defaults and the up/down overrides are resolved.
#[derive(Debug, Default, Clone, Copy)]
struct LinkSpec {
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    reorder: Option<f64>,
    reorder_ms: Option<f64>,
    rate: Option<f64>,
    queue_bytes: Option<u64>,
}

impl LinkSpec {
    /// Records `--name value`; false when `name` is not a link option.
    fn set(&mut self, name: &str, value: &str) -> Result<bool> {
        let flag = |field: &str| format!("--{field}");
        match name {
            "delay-ms" => self.delay_ms = Some(non_negative(&flag(name), value)?),
            "jitter-ms" => self.jitter_ms = Some(non_negative(&flag(name), value)?),
            "reorder-ms" => self.reorder_ms = Some(non_negative(&flag(name), value)?),
            "loss" => self.loss = Some(probability(&flag(name), value)?),
            "reorder" => self.reorder = Some(probability(&flag(name), value)?),
            "rate" => {
                let rate = non_negative(&flag(name), value)?;
                if rate == 0.0 {
                    return Err(usage("--rate must be positive"));
                }
                self.rate = Some(rate);
            }
            "queue-bytes" => self.queue_bytes = Some(integer(&flag(name), value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The settings of one direction: its own where given, the shared ones, then defaults.
    fn resolve(self, shared: Self) -> LinkConfig {
        let defaults = LinkConfig::default();
        let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
        let rate = self.rate.or(shared.rate);
        let queue_bytes = match (self.queue_bytes.or(shared.queue_bytes), rate) {
            (Some(bytes), _) => usize::try_from(bytes).unwrap_or(usize::MAX),
            // About 50 ms of the bottleneck, and room for a few full-size datagrams.
            (None, Some(rate)) => ((rate / 20.0) as usize).max(16 << 10),
            (None, None) => defaults.queue_bytes,
        };
        LinkConfig {
            delay: self.delay_ms.or(shared.delay_ms).map_or(defaults.delay, ms),
            jitter: self
                .jitter_ms
                .or(shared.jitter_ms)
                .map_or(defaults.jitter, ms),
            loss: self.loss.or(shared.loss).unwrap_or(defaults.loss),
            reorder: self.reorder.or(shared.reorder).unwrap_or(defaults.reorder),
            reorder_delay: self
                .reorder_ms
                .or(shared.reorder_ms)
                .map_or(defaults.reorder_delay, ms),
            rate,
            queue_bytes,
        }
    }
}

/// Reads the arguments that follow the program name.
pub fn parse(argv: &[String]) -> Result<Command> {
    let (bench, rest) = match argv.split_first() {
        Some((first, rest)) if first == "bench" => (true, rest),
        _ => (false, argv),
    };
    let (mut shared, mut up, mut down) = (
        LinkSpec::default(),
        LinkSpec::default(),
        LinkSpec::default(),
    );
    let mut listen = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    let mut upstream = None;
    let mut seed = None;
    let mut max_seconds = None;
    let mut bytes = 1u64 << 30;
    let mut datagram = 1200usize;
    let mut window = None;

    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let Some(option) = arg.strip_prefix("--") else {
            return Err(usage(format!("unexpected argument {arg:?}")));
        };
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, value),
            None => match args.next() {
                Some(value) => (option, value.as_str()),
                None => return Err(usage(format!("--{option} needs a value"))),
            },
        };
        let flag = format!("--{name}");
        match name {
            "listen" if !bench => listen = address(&flag, value)?,
            "upstream" if !bench => upstream = Some(address(&flag, value)?),
            "bytes" if bench => bytes = integer(&flag, value)?,
            "datagram" if bench => {
                datagram = usize::try_from(integer(&flag, value)?).unwrap_or(0);
                // Each datagram starts with its 8-byte offset in the stream.
                if !(8..=65_000).contains(&datagram) {
                    return Err(usage("--datagram must be between 8 and 65000"));
                }
            }
            "window" if bench => window = Some(integer(&flag, value)?),
            "seed" => seed = Some(integer(&flag, value)?),
            "max-seconds" => {
                max_seconds = Some(Duration::from_secs_f64(non_negative(&flag, value)?));
            }
            _ => {
                let known = if let Some(field) = name.strip_prefix("up-") {
                    up.set(field, value)?
                } else if let Some(field) = name.strip_prefix("down-") {
                    down.set(field, value)?
                } else {
                    shared.set(name, value)?
                };
                if !known {
                    return Err(usage(format!("unknown option {flag}")));
                }
            }
        }
    }

    let seed = seed.unwrap_or_else(rand::random);
    let (up, down) = (up.resolve(shared), down.resolve(shared));
    if bench {
        return Ok(Command::Bench(BenchOptions {
            bytes,
            datagram,
            window,
            up,
            down,
            seed,
            max_seconds: max_seconds.unwrap_or(Duration::from_secs(300)),
        }));
    }
    let upstream = upstream.ok_or_else(|| usage("--upstream is required"))?;
    Ok(Command::Relay(RelayOptions {
        listen,
        upstream,
        up,
        down,
        seed,
        max_seconds,
    }))
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

fn address(flag: &str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| {
        usage(format!(
            "{flag}: expected an address like [::1]:4433, got {value:?}"
        ))
    })
}

fn integer(flag: &str, value: &str) -> Result<u64> {
    value
        .parse()
        .map_err(|_| usage(format!("{flag}: expected a whole number, got {value:?}")))
}

fn non_negative(flag: &str, value: &str) -> Result<f64> {
    match value.parse::<f64>() {
        // Bounded so that every conversion to a Duration succeeds.
        Ok(v) if v.is_finite() && (0.0..1e12).contains(&v) => Ok(v),
        _ => Err(usage(format!(
            "{flag}: expected a non-negative number, got {value:?}"
        ))),
    }
}

fn probability(flag: &str, value: &str) -> Result<f64> {
    match value.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(usage(format!(
            "{flag}: expected a probability in [0, 1], got {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command> {
        let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&argv)
    }

    #[test]
    fn relay_options_and_overrides() {
        let Command::Relay(options) = parse_str(
            "--down-delay-ms 5 --upstream [::1]:9 --delay-ms=25 --loss 0.1 --rate 1e6 --seed 3",
        )
        .unwrap() else {
            panic!("not a relay command");
        };
        assert_eq!(options.listen, "[::1]:0".parse().unwrap());
        assert_eq!(options.upstream, "[::1]:9".parse().unwrap());
        assert_eq!(options.up.delay, Duration::from_millis(25));
        assert_eq!(options.down.delay, Duration::from_millis(5));
        assert_eq!(options.down.loss, 0.1);
        assert_eq!(options.up.rate, Some(1e6));
        assert_eq!(options.up.queue_bytes, 50_000);
        assert_eq!(options.seed, 3);
        assert_eq!(options.max_seconds, None);
    }

    #[test]
    fn bench_options() {
        let Command::Bench(options) = parse_str("bench --bytes 1000 --delay-ms 50").unwrap() else {
            panic!("not a bench command");
        };
        assert_eq!(options.bytes, 1000);
        assert_eq!(options.datagram, 1200);
        assert_eq!(options.up.delay, Duration::from_millis(50));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for line in [
            "--delay-ms 1",
            "--upstream nowhere",
            "--upstream [::1]:9 --loss 2",
            "--upstream [::1]:9 --rate 0",
            "--upstream [::1]:9 --delay-ms -1",
            "--upstream [::1]:9 --frobnicate 1",
            "--upstream [::1]:9 --loss",
            "bench --upstream [::1]:9",
            "stray",
        ] {
            assert!(matches!(parse_str(line), Err(Error::Usage(_))), "{line}");
        }
        assert_eq!(parse_str("--help").unwrap(), Command::Help);
    }
}
