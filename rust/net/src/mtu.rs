//! Packet sizes: how large a UDP payload a node lets QUIC try, and a socket that never hands
//! the kernel a send batch larger than it accepts.
//!
//! Path MTU discovery (quinn's DPLPMTUD) searches up to the smaller of its own upper bound and
//! the peer's advertised `max_udp_payload_size`; both default to an Ethernet frame. A node
//! sets both to the largest MTU among its interfaces minus the IPv6 and UDP headers
//! ([`local_payload_bound`]): 65,488 bytes on loopback, 8,952 on a jumbo-frame LAN. Discovery
//! then finds each path's own size; a path limited to 1,500 bytes stays at 1,452 as before,
//! and black-hole detection still drops a path back to 1,200 when its large packets vanish.
//!
//! quinn 0.11 hands the socket up to 10 packets per GSO batch whatever their size, and the
//! kernel refuses a batch over 64 KiB; quinn-udp then counts the packets lost, which quinn
//! takes for a black hole (upstream: quinn-rs/quinn#2201, an open issue on chunking
//! `Transmit::contents` in quinn-udp; #2653, closed unmerged, did it there). [`BatchSizedSocket`]
//! wraps the node's socket and splits such a batch into several sends, each within
//! [`MAX_BATCH_BYTES`]; batches of ordinary packets pass untouched. It can go once quinn-udp
//! splits batches itself.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// quinn's own default payload bound (an Ethernet MTU less IPv6 and UDP headers): used where
/// no interface MTU can be read.
pub const DEFAULT_PAYLOAD: u16 = 1452;
/// The largest UDP payload QUIC allows (RFC 9000's `max_udp_payload_size` limit, as quinn).
pub const MAX_PAYLOAD: u16 = 65_527;
/// The smallest: QUIC's minimum datagram size.
pub const MIN_PAYLOAD: u16 = 1200;
/// IPv6 (40) and UDP (8) headers: the payload of a packet as large as a link's MTU.
const HEADERS: u32 = 48;
/// The most UDP payload bytes one send may carry: a GSO batch is one UDP datagram to the
/// kernel until it is cut, so its total is bounded like a datagram's (65,535 less the IPv4
/// and UDP headers, the smaller of the two families' limits).
pub const MAX_BATCH_BYTES: usize = 65_507;
/// Interface MTUs above this are not believed (sysfs is text; a junk value must not matter).
const MAX_INTERFACE_MTU: u32 = 1 << 20;

/// The UDP payload bound for an interface MTU: the MTU less the headers, within QUIC's limits;
/// [`DEFAULT_PAYLOAD`] when the MTU is unknown.
pub fn payload_bound(largest_mtu: Option<u32>) -> u16 {
    let Some(mtu) = largest_mtu else {
        return DEFAULT_PAYLOAD;
    };
    let payload = mtu.saturating_sub(HEADERS);
    u16::try_from(payload)
        .unwrap_or(MAX_PAYLOAD)
        .clamp(MIN_PAYLOAD, MAX_PAYLOAD)
}

/// The largest MTU among this host's interfaces (those up or not; loopback included), read
/// from sysfs, which `ip netns exec` remounts for the namespace it runs in. None where there
/// is no sysfs (not Linux) or nothing could be read.
pub fn largest_interface_mtu() -> Option<u32> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    dir.filter_map(|entry| {
        let path = entry.ok()?.path().join("mtu");
        let text = std::fs::read_to_string(path).ok()?;
        let mtu: u32 = text.trim().parse().ok()?;
        (mtu <= MAX_INTERFACE_MTU).then_some(mtu)
    })
    .max()
}

/// The payload bound of this host: [`payload_bound`] of its largest interface MTU.
pub fn local_payload_bound() -> u16 {
    payload_bound(largest_interface_mtu())
}

/// The sends a transmit of `len` bytes in `segment`-byte packets becomes: (offset, length)
/// of each, every one within [`MAX_BATCH_BYTES`] (a single packet larger than that goes
/// alone, and the kernel judges it).
pub fn split_batch(len: usize, segment: usize) -> impl Iterator<Item = (usize, usize)> {
    let segment = segment.max(1);
    let step = (MAX_BATCH_BYTES / segment).max(1) * segment;
    (0..len)
        .step_by(step)
        .map(move |offset| (offset, step.min(len - offset)))
}

/// A node's UDP socket, as quinn's runtime wraps it, with send batches bounded (see the
/// module's doc) and a receive buffer sized for the payload bound.
pub struct BatchSizedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    payload: u16,
}

impl BatchSizedSocket {
    /// Wraps `socket` (bound and set up by the caller) with quinn's tokio runtime.
    pub(crate) fn wrap(
        socket: std::net::UdpSocket,
        payload: u16,
    ) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        use quinn::Runtime;
        let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        Ok(Arc::new(Self { inner, payload }))
    }
}

impl fmt::Debug for BatchSizedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSizedSocket")
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for BatchSizedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let segment = match transmit.segment_size {
            Some(segment) if transmit.contents.len() > MAX_BATCH_BYTES => segment,
            _ => return self.inner.try_send(transmit),
        };
        // A later part that would block fails the whole transmit, which quinn then sends
        // again when the socket is writable: the parts that went arrive twice, and the
        // receiver drops the repeats as duplicate packet numbers. Nothing is lost or reordered
        // into a black hole.
        for (offset, len) in split_batch(transmit.contents.len(), segment) {
            let part = Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: &transmit.contents[offset..offset + len],
                segment_size: (len > segment).then_some(segment),
                src_ip: transmit.src_ip,
            };
            self.inner.try_send(&part)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    /// quinn sizes each receive buffer as payload bound x this: a GRO batch is one datagram
    /// to the kernel (at most 64 KiB), so more segments than fill 64 KiB only waste memory.
    fn max_receive_segments(&self) -> usize {
        let fill = usize::from(u16::MAX).div_ceil(usize::from(self.payload.max(1)));
        self.inner.max_receive_segments().min(fill.max(1))
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_follows_the_interface_mtu_within_quic_limits() {
        assert_eq!(payload_bound(None), DEFAULT_PAYLOAD);
        assert_eq!(payload_bound(Some(1500)), 1452);
        assert_eq!(payload_bound(Some(9000)), 8952);
        assert_eq!(payload_bound(Some(65_536)), 65_488);
        assert_eq!(payload_bound(Some(576)), MIN_PAYLOAD);
        assert_eq!(payload_bound(Some(1 << 20)), MAX_PAYLOAD);
    }

    #[test]
    fn the_largest_interface_is_at_least_loopback() {
        // Every Linux namespace has lo (65,536 unless someone changed it).
        let mtu = largest_interface_mtu();
        assert!(mtu.is_some_and(|m| m >= 1280), "{mtu:?}");
    }

    #[test]
    fn batches_are_cut_at_whole_packets_within_the_kernel_limit() {
        // quinn's 10 x 6,600 bytes (66,000) is two sends: 9 packets, then 1.
        let parts: Vec<_> = split_batch(66_000, 6_600).collect();
        assert_eq!(parts, vec![(0, 59_400), (59_400, 6_600)]);
        // A short last packet stays with its batch.
        let parts: Vec<_> = split_batch(8 * 8_952 + 100, 8_952).collect();
        assert_eq!(parts, vec![(0, 7 * 8_952), (7 * 8_952, 8_952 + 100)]);
        // Packets as large as loopback allows go one by one.
        let parts: Vec<_> = split_batch(3 * 65_488, 65_488).collect();
        assert_eq!(parts.len(), 3);
        for (offset, len) in split_batch(10 * 1452, 1452) {
            assert!(len <= MAX_BATCH_BYTES && offset % 1452 == 0);
        }
        assert_eq!(split_batch(0, 1452).count(), 0);
    }
}
