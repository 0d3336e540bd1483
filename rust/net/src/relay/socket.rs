//! The virtual UDP socket under a node's relayed endpoint: every circuit of the node is one
//! synthetic peer address in `100::/64` (RFC 6666, discard-only, so none can ever be a real
//! peer's), and the socket moves the inner QUIC connection's packets between quinn and the
//! circuits' streams.
//!
//! Invariants: a send never blocks the endpoint (a full circuit queue drops the packet, as a
//! router would, and the inner connection's congestion control slows down); every queue is
//! bounded in packets, and packets in bytes ([`MAX_CIRCUIT_PACKET`]); a packet for an address
//! with no circuit is dropped.

use bytes::Bytes;
use i6p_core::relay::MAX_CIRCUIT_PACKET;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

use crate::session::{Session, SessionInner};

/// Packets queued towards one circuit's stream before more are dropped.
pub(crate) const CIRCUIT_QUEUE: usize = 256;
/// Packets from all circuits queued towards the endpoint; a full queue holds the circuits'
/// readers back (and so, by flow control, their relays).
const INCOMING_QUEUE: usize = 1024;

/// The node's circuits, by synthetic address: where packets to each go, and the relayed
/// session over it once there is one.
pub(crate) struct Circuits {
    routes: Mutex<HashMap<SocketAddr, Route>>,
    next: AtomicU64,
    incoming: mpsc::Sender<(SocketAddr, Bytes)>,
    max: usize,
}

struct Route {
    out: mpsc::Sender<Bytes>,
    session: Option<Weak<SessionInner>>,
}

impl Circuits {
    /// A table of at most `max` circuits, and the socket that serves them.
    pub(crate) fn new(max: usize) -> (Arc<Self>, VirtualSocket) {
        let (tx, rx) = mpsc::channel(INCOMING_QUEUE);
        let circuits = Arc::new(Self {
            routes: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            incoming: tx,
            max,
        });
        let socket = VirtualSocket {
            circuits: circuits.clone(),
            incoming: Mutex::new(rx),
        };
        (circuits, socket)
    }

    /// A new circuit's address and the queue of packets to send on it; None at the limit.
    pub(crate) fn open(&self) -> Option<(SocketAddr, mpsc::Receiver<Bytes>)> {
        let mut routes = self.routes.lock().ok()?;
        if routes.len() >= self.max {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ip = Ipv6Addr::from((0x0100u128 << 112) | u128::from(n));
        let addr = SocketAddr::new(ip.into(), 1);
        let (tx, rx) = mpsc::channel(CIRCUIT_QUEUE);
        routes.insert(
            addr,
            Route {
                out: tx,
                session: None,
            },
        );
        Some((addr, rx))
    }

    /// Whether another circuit fits.
    pub(crate) fn has_room(&self) -> bool {
        self.routes.lock().is_ok_and(|r| r.len() < self.max)
    }

    /// Circuits open now.
    pub(crate) fn len(&self) -> usize {
        self.routes.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Notes the relayed session over the circuit at `addr`, so the circuit's end ends it.
    pub(crate) fn attach(&self, addr: SocketAddr, session: &Session) {
        if let Ok(mut routes) = self.routes.lock() {
            if let Some(route) = routes.get_mut(&addr) {
                route.session = Some(session.downgrade());
            }
        }
    }

    /// Forgets the circuit at `addr`; its writer finishes the stream once its queue drains.
    /// Returns the session over it, if one is alive.
    pub(crate) fn remove(&self, addr: SocketAddr) -> Option<Session> {
        let route = self.routes.lock().ok()?.remove(&addr)?;
        route.session.as_ref().and_then(Session::upgrade)
    }

    /// Hands a packet that arrived on the circuit at `addr` to the endpoint; waits while the
    /// endpoint's queue is full. False once the endpoint is gone.
    pub(crate) async fn deliver(&self, addr: SocketAddr, packet: Bytes) -> bool {
        self.incoming.send((addr, packet)).await.is_ok()
    }

    /// Waits while the circuit at `addr` exists (the stalling test hook holds its streams
    /// unread meanwhile), at most a minute.
    pub(crate) async fn stalled(&self, addr: SocketAddr) {
        for _ in 0..600 {
            if !self.routes.lock().is_ok_and(|r| r.contains_key(&addr)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.remove(addr);
    }

    /// Forgets every circuit (the node is closing).
    pub(crate) fn clear(&self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
    }
}

/// The socket quinn's relayed endpoint runs on (see the module's doc).
pub(crate) struct VirtualSocket {
    circuits: Arc<Circuits>,
    incoming: Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
}

impl std::fmt::Debug for VirtualSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VirtualSocket({} circuits)", self.circuits.len())
    }
}

/// The socket's own address: never on the wire, only quinn sees it.
pub(crate) fn local_addr() -> SocketAddr {
    SocketAddr::new(Ipv6Addr::from(0x0100u128 << 112).into(), 1)
}

impl AsyncUdpSocket for VirtualSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Ok(routes) = self.circuits.routes.lock() else {
            return Ok(());
        };
        let Some(route) = routes.get(&transmit.destination) else {
            return Ok(());
        };
        // One datagram per transmit (max_transmit_segments is 1); split anyway if quinn ever
        // hands several, so the circuit's framing always holds whole packets.
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for packet in transmit.contents.chunks(size) {
            if packet.len() <= MAX_CIRCUIT_PACKET {
                // Full: dropped, like a router's queue (see the module's doc).
                let _ = route.out.try_send(Bytes::copy_from_slice(packet));
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut rx) = self.incoming.lock() else {
            return Poll::Ready(Err(io::Error::other("virtual socket lock poisoned")));
        };
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let next = if filled == 0 {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(p)) => p,
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(io::Error::other("virtual socket closed")))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                match rx.try_recv() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let (addr, packet) = next;
            let buf = &mut bufs[filled];
            if packet.len() > buf.len() {
                continue;
            }
            buf[..packet.len()].copy_from_slice(&packet);
            meta[filled] = RecvMeta {
                addr,
                len: packet.len(),
                stride: packet.len(),
                ecn: None,
                dst_ip: None,
            };
            filled += 1;
        }
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(local_addr())
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// Sends never block (see the module's doc), so the socket is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
