//! Transport tuning: congestion controller, flow-control windows and their auto-tuning.
//!
//! quinn's defaults assume a 100 ms, 100 Mbit/s path: a stream may have 1.25 MB in flight, a
//! connection 10 MB unacknowledged, which caps one stream on a 100 ms link at 12.5 MB/s. I6P
//! instead lets each stream's window reach `max_window`, and bounds what a connection may have
//! in flight with its connection-level windows, which a small task per session grows towards
//! twice the measured bandwidth × RTT (the way Linux auto-tunes TCP receive buffers): while a
//! window is the limit, the rate it allows is window / RTT, so the next target doubles it;
//! once the path is the limit, the target settles at twice the path's BDP. Windows only grow,
//! so memory stays bounded by `max_window` per connection and direction, and is only used when
//! the application reads slower than the network delivers.

use crate::error::{NetError, Result};
use quinn::{congestion, TransportConfig, VarInt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The congestion controller of a node's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// CUBIC (RFC 9438): loss-based, quinn's default.
    #[default]
    Cubic,
    /// BBR (quinn's experimental implementation): model-based, tolerant of random loss.
    Bbr,
    /// NewReno (RFC 9002): the conservative reference.
    NewReno,
    /// BBR within a bound learned from queue build-up (see [`crate::congestion`]): fills a
    /// link with a shallow queue without overflowing it, tolerant of random loss like BBR.
    Bounded,
}

impl Congestion {
    /// Parses "cubic", "bbr", "bounded" or "newreno".
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Self::Cubic),
            "bbr" => Ok(Self::Bbr),
            "bounded" => Ok(Self::Bounded),
            "newreno" | "new_reno" | "reno" => Ok(Self::NewReno),
            other => Err(NetError::Config(format!(
                "unknown congestion controller {other:?} (cubic, bbr, bounded, newreno)"
            ))),
        }
    }
}

/// How flow-control windows are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Start at `initial` bytes per connection and direction, grow with the measured
    /// bandwidth × RTT up to `max`.
    Auto {
        /// Connection window at the start.
        initial: u64,
        /// Largest connection window (streams get at most [`MAX_STREAM_WINDOW`]).
        max: u64,
    },
    /// Fixed windows: a connection may have this many bytes in flight (a stream at most
    /// [`MAX_STREAM_WINDOW`]).
    Fixed(u64),
    /// quinn's built-in defaults (1.25 MB per stream, 10 MB send window), for comparison.
    QuinnDefault,
}

impl Default for Windows {
    fn default() -> Self {
        Self::Auto {
            initial: 8 << 20,
            max: 64 << 20,
        }
    }
}

/// Largest window of one stream. quinn keeps at most 1024 separate spans of out-of-order data
/// per stream and kills the connection beyond that; a loss burst that drops every other
/// packet of a window leaves one span per two packets, so a stream's window must stay below
/// about 1024 x 2 x 1200 bytes. Links whose bandwidth x RTT exceeds this are filled with
/// several streams (a fetch stripes its requests over `streams` of them); the connection
/// window, which is auto-tuned, bounds them together.
pub const MAX_STREAM_WINDOW: u64 = 2 << 20;

/// Smallest window accepted: below a few packets nothing moves.
const MIN_WINDOW: u64 = 64 << 10;
/// Largest window accepted (1 GiB): beyond that a peer could make us buffer absurd amounts.
const MAX_WINDOW: u64 = 1 << 30;

impl Windows {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<()> {
        let ok = |w: u64| (MIN_WINDOW..=MAX_WINDOW).contains(&w);
        let valid = match *self {
            Self::Auto { initial, max } => ok(initial) && ok(max) && initial <= max,
            Self::Fixed(w) => ok(w),
            Self::QuinnDefault => true,
        };
        if valid {
            Ok(())
        } else {
            Err(NetError::Config(format!(
                "windows {self:?} out of range ({MIN_WINDOW}..={MAX_WINDOW} bytes, initial <= max)"
            )))
        }
    }
}

/// Applies the congestion controller and windows to a transport configuration.
pub(crate) fn apply(
    t: &mut TransportConfig,
    congestion: Congestion,
    windows: Windows,
    closing: &crate::closing::NodeClosing,
) {
    let factory: Arc<dyn congestion::ControllerFactory + Send + Sync> = match congestion {
        Congestion::Cubic => Arc::new(congestion::CubicConfig::default()),
        Congestion::Bbr => Arc::new(congestion::BbrConfig::default()),
        Congestion::NewReno => Arc::new(congestion::NewRenoConfig::default()),
        Congestion::Bounded => Arc::new(crate::congestion::BoundedFactory::new(
            congestion::BbrConfig::default(),
        )),
    };
    t.congestion_controller_factory(Arc::new(crate::closing::CloseAwareFactory::new(
        factory, closing,
    )));
    let var = |w: u64| VarInt::from_u64(w).unwrap_or(VarInt::MAX);
    match windows {
        Windows::Auto { initial, max } => {
            t.stream_receive_window(var(max.min(MAX_STREAM_WINDOW)));
            t.receive_window(var(initial));
            t.send_window(initial);
        }
        Windows::Fixed(w) => {
            t.stream_receive_window(var(w.min(MAX_STREAM_WINDOW)));
            t.receive_window(var(w));
            t.send_window(w);
        }
        Windows::QuinnDefault => {}
    }
}

/// How often windows are reconsidered, relative to the RTT, and its bounds.
const TUNE_MIN_INTERVAL: Duration = Duration::from_millis(20);
const TUNE_MAX_INTERVAL: Duration = Duration::from_millis(250);

/// Grows `conn`'s windows with its measured delivery rate × RTT until the connection closes,
/// and the node's socket buffers with them.
pub(crate) async fn auto_tune(
    conn: quinn::Connection,
    windows: Windows,
    buffers: Option<Arc<crate::socket::SocketBuffers>>,
) {
    let Windows::Auto { initial, max } = windows else {
        return;
    };
    let (mut recv_window, mut send_window) = (initial, initial);
    let mut last = (Instant::now(), conn.stats());
    loop {
        let interval = (conn.rtt() * 2).clamp(TUNE_MIN_INTERVAL, TUNE_MAX_INTERVAL);
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let (now, stats) = (Instant::now(), conn.stats());
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rtt = conn.rtt().as_secs_f64();
        let target = |bytes: u64| (2.0 * bytes as f64 / secs * rtt) as u64;
        let rx = target(stats.udp_rx.bytes.saturating_sub(last.1.udp_rx.bytes));
        let tx = target(stats.udp_tx.bytes.saturating_sub(last.1.udp_tx.bytes));
        if rx > recv_window && recv_window < max {
            recv_window = rx.min(max);
            conn.set_receive_window(VarInt::from_u64(recv_window).unwrap_or(VarInt::MAX));
            tracing::debug!(recv_window, "receive window grown");
            if let Some(buffers) = &buffers {
                buffers.grow(usize::try_from(recv_window).unwrap_or(usize::MAX));
            }
        }
        if tx > send_window && send_window < max {
            send_window = tx.min(max);
            conn.set_send_window(send_window);
            tracing::debug!(send_window, "send window grown");
        }
        last = (now, stats);
    }
}
