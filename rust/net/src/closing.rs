//! A connection's CONNECTION_CLOSE leaves even when its congestion window is full.
//!
//! quinn-proto 0.11 (up to 0.11.19, the newest 0.11 release) lets the close packet through
//! the congestion check whenever the closing space still holds ack-eliciting frames (stream
//! data written just before the close). Once closed, a connection no longer processes ACKs
//! and has stopped its loss timers, so bytes in flight never drain: a close that is blocked
//! once is never sent. The connection drains silently after 3 PTO and the peer's next packet
//! draws a stateless reset (code 0, no reason) or, if it sends nothing, its idle timeout.
//! Upstream: quinn-rs/quinn#2785, fixed on main by #2787 (not in a 0.11 release).
//!
//! Large packets make it likely: a window is at least two packets (about 130 KB at loopback's
//! 65,488-byte payloads), the check asks for room for a whole packet, and a single
//! path-MTU probe in flight (up to 65 KB) already fills the rest. Right after a handshake,
//! while discovery probes, nearly every close was lost.
//!
//! [`CloseAware`] wraps the node's congestion controller; [`close`] opens its window (to
//! `u64::MAX`, which also turns pacing off) just before it closes the connection, so the close
//! packet (ACKs and CONNECTION_CLOSE only: a closed connection sends nothing else) is never
//! held back. A node that closes its endpoint (every connection at once) turns its
//! [`NodeClosing`] switch on first, which opens the windows of all its connections. Drop this
//! module once quinn-proto ships #2787 in the version this crate uses.

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Closes `conn` with `code` and `reason`, with its close packet exempt from congestion
/// control (see the module's doc). Every close of a node's connections goes through here.
pub fn close(conn: &quinn::Connection, code: quinn::VarInt, reason: &[u8]) {
    // The state quinn hands out is a clone; it shares the switch with the live controller.
    if let Ok(controller) = conn.congestion_state().into_any().downcast::<CloseAware>() {
        controller.closing.store(true, Ordering::Release);
    }
    conn.close(code, reason);
}

/// A node's switch for all its connections at once: on before it closes its endpoint.
#[derive(Clone, Debug, Default)]
pub struct NodeClosing(Arc<AtomicBool>);

impl NodeClosing {
    /// Opens the window of every connection built with this switch.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A congestion controller whose window opens fully once its connection is closing.
pub struct CloseAware {
    inner: Box<dyn Controller>,
    closing: Arc<AtomicBool>,
    node: NodeClosing,
}

impl CloseAware {
    /// True once [`close`] was called on the connection, or its node is closing.
    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.node.0.load(Ordering::Acquire)
    }
}

impl Controller for CloseAware {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        if self.is_closing() {
            u64::MAX
        } else {
            self.inner.window()
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        self.inner.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            closing: self.closing.clone(),
            node: self.node.clone(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Builds a [`CloseAware`] around each controller `inner` builds.
pub struct CloseAwareFactory {
    inner: Arc<dyn ControllerFactory + Send + Sync>,
    node: NodeClosing,
}

impl CloseAwareFactory {
    /// Wraps `inner`; the controllers also open when `node` is set.
    pub fn new(inner: Arc<dyn ControllerFactory + Send + Sync>, node: &NodeClosing) -> Self {
        Self {
            inner,
            node: node.clone(),
        }
    }
}

impl ControllerFactory for CloseAwareFactory {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(CloseAware {
            inner: self.inner.clone().build(now, current_mtu),
            closing: Arc::new(AtomicBool::new(false)),
            node: self.node.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::congestion::CubicConfig;

    #[test]
    fn the_window_opens_on_close_and_clones_share_the_switch() {
        let node = NodeClosing::default();
        let factory = Arc::new(CloseAwareFactory::new(
            Arc::new(CubicConfig::default()),
            &node,
        ));
        let live = factory.clone().build(Instant::now(), 65_488);
        let other = factory.build(Instant::now(), 65_488);
        let normal = live.window();
        assert!(normal < u64::from(u32::MAX), "{normal}");
        // What `close` does with the copy quinn's `congestion_state` returns.
        let copy = live.clone_box().into_any().downcast::<CloseAware>();
        let Ok(copy) = copy else {
            panic!("not a CloseAware")
        };
        copy.closing.store(true, Ordering::Release);
        assert_eq!(live.window(), u64::MAX);
        assert_eq!(live.initial_window(), copy.inner.initial_window());
        // One connection's close leaves the node's others alone; the node's switch opens all.
        assert_eq!(other.window(), normal);
        node.set();
        assert_eq!(other.window(), u64::MAX);
    }
}
