//! The relay: two sockets and one thread per direction.
//!
//! The listen socket faces the client; a second socket, owned by the relay, faces the upstream.
//! Each direction's thread receives on one socket in batches (recvmmsg, GRO), passes every
//! datagram through its [`Link`], and sends what is due from the other socket (GSO). In between
//! it waits on epoll for input or for the next due time. The only state the two threads share
//! is the client's address, which the upward thread learns and the downward thread reads.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use socket2::{Domain, Protocol, Type};

use crate::error::{Error, Result};
use crate::link::{Link, LinkConfig, LinkStats};

/// Bytes asked for each socket buffer; the kernel caps it at `net.core.[rw]mem_max`.
const SOCKET_BUFFER: usize = 8 << 20;

/// Room for one received datagram: a GRO batch on loopback is at most 64 KiB.
const SLOT: usize = 96 << 10;

/// Most bytes in one GSO send: a UDP payload cannot exceed 65,507 bytes.
pub const MAX_GSO_BYTES: usize = 65_000;

/// Longest a thread sleeps before it looks at the stop flag again.
const IDLE: Duration = Duration::from_millis(20);

/// Wait before retrying a send that the socket pushed back.
const SEND_RETRY: Duration = Duration::from_micros(200);

const READABLE: Token = Token(0);

/// A UDP socket set up for batched I/O: non-blocking, GRO on, large buffers.
#[derive(Debug)]
pub struct Socket {
    io: UdpSocket,
    state: UdpSocketState,
}

impl Socket {
    /// Binds a socket to `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: a smaller buffer only means drops under bursts, which the stats show.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        let io = UdpSocket::from(socket);
        let state = UdpSocketState::new((&io).into())?;
        Ok(Self { io, state })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.io.local_addr()?)
    }

    /// Most datagrams one GSO send may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Receives one batch of datagrams without blocking; `Ok(0)` when none is waiting.
    pub fn recv(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        match self.state.recv((&self.io).into(), bufs, meta) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Sends one datagram, or several of `segment_size` bytes (the last may be shorter).
    pub fn send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.state.try_send((&self.io).into(), transmit)
    }

    /// Registers the socket's readability with `poll` under `token`.
    pub fn register(&self, poll: &Poll, token: Token) -> io::Result<()> {
        let fd = self.io.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
    }
}

/// Receive buffers for one thread: [`BATCH_SIZE`] slots, allocated once.
#[derive(Debug)]
pub struct RecvBuffers {
    slots: Vec<u8>,
    meta: Vec<RecvMeta>,
}

impl RecvBuffers {
    /// Allocates the slots.
    pub fn new() -> Self {
        Self {
            slots: vec![0; SLOT * BATCH_SIZE],
            meta: vec![RecvMeta::default(); BATCH_SIZE],
        }
    }

    /// Receives one batch from `socket` and calls `each` with every datagram (a GRO batch is
    /// split into its datagrams) and the address it came from; returns the number of
    /// batches received, 0 when none was waiting.
    pub fn recv(
        &mut self,
        socket: &Socket,
        mut each: impl FnMut(SocketAddr, &[u8], &RecvMeta),
    ) -> io::Result<usize> {
        // Rebuilding the slices is a few stores per slot and keeps `slots` free to borrow.
        let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] = {
            let mut chunks = self.slots.chunks_mut(SLOT);
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
        };
        let n = socket.recv(&mut bufs, &mut self.meta)?;
        for (meta, buf) in self.meta.iter().zip(bufs.iter()).take(n) {
            let data = &buf[..meta.len.min(buf.len())];
            if data.is_empty() {
                each(meta.addr, data, meta);
                continue;
            }
            for datagram in data.chunks(meta.stride.max(1)) {
                each(meta.addr, datagram, meta);
            }
        }
        Ok(n)
    }
}

impl Default for RecvBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes one direction has taken in and sent on, readable from other threads: a sender in the
/// same process (the bench) paces itself on them.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes taken off the receiving socket.
    pub received: AtomicU64,
    /// Bytes sent on.
    pub forwarded: AtomicU64,
}

/// The latest client address, written by the upward thread and read by the downward one.
#[derive(Debug, Default)]
struct ClientAddr(Mutex<Option<SocketAddr>>);

impl ClientAddr {
    fn get(&self) -> Option<SocketAddr> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, addr: SocketAddr) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
    }
}

/// Where one direction's datagrams go.
#[derive(Debug)]
enum Destination {
    /// Always the same address: the upstream.
    Fixed(SocketAddr),
    /// Whichever client spoke last.
    Client(Arc<ClientAddr>),
}

/// One direction: where it reads, where it writes, and the link in between.
#[derive(Debug)]
struct Direction {
    rx: Arc<Socket>,
    tx: Arc<Socket>,
    /// When set, datagrams from any other address are ignored (the upstream socket).
    only_from: Option<SocketAddr>,
    /// When set, each sender's address is recorded here (the listen socket).
    learn_client: Option<Arc<ClientAddr>>,
    known_client: Option<SocketAddr>,
    destination: Destination,
    link: Link,
    progress: Arc<Progress>,
    reported_error: bool,
}

impl Direction {
    fn run(mut self, stop: &AtomicBool) -> Result<LinkStats> {
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(4);
        self.rx.register(&poll, READABLE)?;
        let mut buffers = RecvBuffers::new();
        let mut out = Vec::with_capacity(MAX_GSO_BYTES);
        while !stop.load(Ordering::Relaxed) {
            let received = self.receive(&mut buffers);
            let blocked = self.send_due(Instant::now(), &mut out);
            if received > 0 {
                continue;
            }
            let now = Instant::now();
            let wait = if blocked {
                SEND_RETRY
            } else {
                self.link
                    .next_due()
                    .map_or(IDLE, |due| due.saturating_duration_since(now))
                    .min(IDLE)
            };
            if wait < Duration::from_millis(1) {
                // epoll counts whole milliseconds: sleep through a shorter wait instead, and
                // let arrivals wait in the socket for that long.
                thread::sleep(wait);
                continue;
            }
            // Whole milliseconds only (mio rounds a fraction up), so the thread wakes at or
            // before the due time and sleeps the rest above.
            let whole = Duration::from_millis(wait.as_millis().try_into().unwrap_or(u64::MAX));
            match poll.poll(&mut events, Some(whole)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e.into()),
                _ => {}
            }
        }
        Ok(self.link.stats())
    }

    /// Receives one batch into the link; returns how many datagrams (or GRO batches) came.
    fn receive(&mut self, buffers: &mut RecvBuffers) -> usize {
        // Read the clock after the datagrams are in hand, never before they arrived: a datagram
        // must not leave before its full delay.
        let mut arrived: Option<Instant> = None;
        let mut bytes = 0u64;
        let Self {
            rx,
            only_from,
            learn_client,
            known_client,
            link,
            ..
        } = &mut *self;
        let result = buffers.recv(rx, |from, datagram, meta| {
            if only_from.is_some_and(|a| a.ip() != from.ip() || a.port() != from.port()) {
                return;
            }
            if let Some(client) = learn_client {
                if *known_client != Some(from) {
                    client.set(from);
                    *known_client = Some(from);
                }
            }
            bytes += datagram.len() as u64;
            let now = *arrived.get_or_insert_with(Instant::now);
            link.admit(now, datagram, meta.ecn);
        });
        self.progress.received.fetch_add(bytes, Ordering::Relaxed);
        match result {
            Ok(n) => n,
            Err(e) => {
                self.report(&e);
                0
            }
        }
    }

    /// Sends every datagram that is due; true when the socket pushed back.
    fn send_due(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let destination = match &self.destination {
            Destination::Fixed(addr) => Some(*addr),
            Destination::Client(client) => client.get(),
        };
        let max_segments = self.tx.max_segments();
        while let Some(batch) = self.link.peek_batch(now, max_segments, MAX_GSO_BYTES, out) {
            let Some(destination) = destination else {
                self.link.commit(batch.count, false);
                continue;
            };
            let transmit = Transmit {
                destination,
                ecn: batch.ecn,
                contents: out,
                segment_size: (batch.count > 1).then_some(batch.segment_size),
                src_ip: None,
            };
            match self.tx.send(&transmit) {
                Ok(()) => {
                    self.link.commit(batch.count, true);
                    let bytes = out.len() as u64;
                    self.progress.forwarded.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    self.report(&e);
                    self.link.commit(batch.count, false);
                }
            }
        }
        false
    }

    /// Tells the first I/O error on stderr; the rest show in the counters.
    fn report(&mut self, error: &io::Error) {
        if !self.reported_error {
            self.reported_error = true;
            eprintln!("i6p-impair: {error}");
        }
    }
}

/// A relay whose sockets are bound but whose threads have not started.
#[derive(Debug)]
pub struct Relay {
    listen: Arc<Socket>,
    outside: Arc<Socket>,
    upstream: SocketAddr,
}

impl Relay {
    /// Binds the listen socket to `listen` and the relay's own socket on the upstream's side.
    pub fn bind(listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        // Stay on loopback when the upstream is there, so nothing leaves the host.
        let ip = match upstream {
            SocketAddr::V6(a) if a.ip().is_loopback() => Ipv6Addr::LOCALHOST.into(),
            SocketAddr::V4(a) if a.ip().is_loopback() => (*a.ip()).into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        };
        Ok(Self {
            listen: Arc::new(Socket::bind(listen)?),
            outside: Arc::new(Socket::bind(SocketAddr::new(ip, 0))?),
            upstream,
        })
    }

    /// The address clients send to.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen.local_addr()
    }

    /// Starts one thread per direction; they run until `stop` is set.
    pub fn spawn(
        self,
        up: LinkConfig,
        down: LinkConfig,
        seed: u64,
        stop: Arc<AtomicBool>,
    ) -> Result<Running> {
        let now = Instant::now();
        let client = Arc::new(ClientAddr::default());
        let up_progress = Arc::new(Progress::default());
        let upward = Direction {
            rx: Arc::clone(&self.listen),
            tx: Arc::clone(&self.outside),
            only_from: None,
            learn_client: Some(Arc::clone(&client)),
            known_client: None,
            destination: Destination::Fixed(self.upstream),
            link: Link::new(up, seed, now),
            progress: Arc::clone(&up_progress),
            reported_error: false,
        };
        let downward = Direction {
            rx: self.outside,
            tx: self.listen,
            only_from: Some(self.upstream),
            learn_client: None,
            known_client: None,
            destination: Destination::Client(client),
            // A different stream of draws, so that both directions do not drop in lockstep.
            link: Link::new(down, seed ^ 0x9e37_79b9_7f4a_7c15, now),
            progress: Arc::default(),
            reported_error: false,
        };
        let spawn = |name: &str, direction: Direction| {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(name.into())
                .spawn(move || direction.run(&stop))
        };
        Ok(Running {
            up: spawn("impair-up", upward)?,
            down: spawn("impair-down", downward)?,
            up_progress,
        })
    }
}

/// The relay's running threads.
#[derive(Debug)]
pub struct Running {
    up: JoinHandle<Result<LinkStats>>,
    down: JoinHandle<Result<LinkStats>>,
    up_progress: Arc<Progress>,
}

impl Running {
    /// What the upward thread has taken in and sent on so far.
    pub fn up_progress(&self) -> Arc<Progress> {
        Arc::clone(&self.up_progress)
    }

    /// Whether a thread has ended (it stops early only on an error).
    pub fn is_finished(&self) -> bool {
        self.up.is_finished() || self.down.is_finished()
    }

    /// Waits for both threads (set the stop flag first) and returns their counters, up then down.
    pub fn join(self) -> Result<(LinkStats, LinkStats)> {
        let up = self.up.join().map_err(|_| Error::Panicked)?;
        let down = self.down.join().map_err(|_| Error::Panicked)?;
        Ok((up?, down?))
    }
}
