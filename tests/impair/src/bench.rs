//! `i6p-impair bench`: the relay's capacity, measured without QUIC.
//!
//! A relay runs in-process between a sender and a sink, all on `[::1]`. The sender pushes the
//! bytes in GSO batches of fixed-size datagrams, each starting with its offset in the stream,
//! and paces itself so that socket buffers rarely overflow: what the relay has not yet read, and
//! what the relay sent but the sink has not yet reached, each stay under a few MiB; what the
//! sink has not yet reached stays under the path's bandwidth-delay product plus a margin. The
//! sink's reach is the end of the furthest datagram it received, so a dropped datagram does not
//! hold the sender back; if nothing moves for a while, the sender writes off what is in flight.
//! The sink stops once everything arrived or after a second of silence, so a run always ends.

use std::io::{self, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use quinn_udp::Transmit;

use crate::args::BenchOptions;
use crate::error::{Error, Result};
use crate::link::LinkConfig;
use crate::relay::{Progress, RecvBuffers, Relay, Socket, MAX_GSO_BYTES};

/// Bytes the relay may leave unread on its listen socket: well under the receive buffer.
const RELAY_BACKLOG: u64 = 2 << 20;

/// Bytes the sink may leave unread: under its receive buffer, and above the relay's bursts (a
/// whole receive batch, about 2 MiB, can come due at once).
const SINK_BACKLOG: u64 = 4 << 20;

/// In-flight margin on top of the bandwidth-delay product.
const WINDOW_MARGIN: u64 = 4 << 20;

/// Rate assumed for the bandwidth-delay product when no bottleneck is set.
const ASSUMED_RATE: f64 = 2e9;

/// Silence after which the sink gives up on the datagrams still missing.
const SINK_IDLE: Duration = Duration::from_secs(1);

/// Pause of a sender that waits for its window.
const PACE: Duration = Duration::from_micros(200);

/// What the sink saw.
#[derive(Debug, Default, Clone, Copy)]
struct SinkReport {
    bytes: u64,
    packets: u64,
    last: Option<Instant>,
}

/// Runs the bench and prints its JSON line.
pub fn run(options: BenchOptions) -> Result<()> {
    let loopback = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    let sink = Socket::bind(loopback)?;
    let relay = Relay::bind(loopback, sink.local_addr()?)?;
    let relay_addr = relay.listen_addr()?;
    let sender = Socket::bind(loopback)?;

    let stop = Arc::new(AtomicBool::new(false));
    let relay = relay.spawn(
        options.up.clone(),
        options.down.clone(),
        options.seed,
        Arc::clone(&stop),
    )?;
    let reach = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + options.max_seconds;
    let sink = {
        let reach = Arc::clone(&reach);
        let (total, idle) = (options.bytes, SINK_IDLE + longest_delay(&options.up));
        thread::Builder::new()
            .name("impair-sink".into())
            .spawn(move || receive_all(&sink, total, &reach, idle, deadline))?
    };

    let window = options
        .window
        .unwrap_or_else(|| default_window(&options.up));
    let start = Instant::now();
    let sent = send_all(
        &sender,
        relay_addr,
        &options,
        window,
        &relay.up_progress(),
        &reach,
        deadline,
    );
    let report = sink.join().map_err(|_| Error::Panicked)?;
    stop.store(true, Ordering::Relaxed);
    let (up, down) = relay.join()?;
    let ((bytes_sent, packets_sent), report) = (sent?, report?);

    let seconds = report
        .last
        .map_or(0.0, |last| last.duration_since(start).as_secs_f64());
    let rate = if seconds > 0.0 {
        report.bytes as f64 / seconds
    } else {
        0.0
    };
    let line = format!(
        concat!(
            "{{\"bytes_sent\":{},\"bytes_delivered\":{},\"seconds\":{:.6},",
            "\"bytes_per_second\":{:.0},\"packets_sent\":{},\"packets_delivered\":{},",
            "\"packets_dropped\":{},\"datagram\":{},\"window\":{},",
            "\"relay\":{{\"up\":{},\"down\":{}}}}}"
        ),
        bytes_sent,
        report.bytes,
        seconds,
        rate,
        packets_sent,
        report.packets,
        packets_sent.saturating_sub(report.packets),
        options.datagram,
        window,
        up.to_json(),
        down.to_json(),
    );
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// The most a datagram can be delayed past its bottleneck.
fn longest_delay(link: &LinkConfig) -> Duration {
    link.delay + link.jitter + link.reorder_delay
}

/// The bandwidth-delay product of the path plus a margin.
fn default_window(link: &LinkConfig) -> u64 {
    let rate = link.rate.unwrap_or(ASSUMED_RATE);
    WINDOW_MARGIN + (rate * longest_delay(link).as_secs_f64()) as u64
}

/// Pushes the bytes through the relay; returns bytes and datagrams sent.
fn send_all(
    sender: &Socket,
    destination: SocketAddr,
    options: &BenchOptions,
    window: u64,
    relay: &Progress,
    reach: &AtomicU64,
    deadline: Instant,
) -> Result<(u64, u64)> {
    let segment = options.datagram;
    let per_send = sender.max_segments().min(MAX_GSO_BYTES / segment).max(1);
    let mut payload = vec![0x5a_u8; segment * per_send];
    // A wait that sees no progress for this long has lost what it waits for.
    let stall_limit = Duration::from_millis(200) + 2 * longest_delay(&options.up);
    let (mut sent, mut packets) = (0u64, 0u64);
    // Bytes written off as lost before the relay read them, and the offset below which
    // everything is written off as lost before the sink.
    let (mut lost_before_relay, mut written_off) = (0u64, 0u64);
    let mut stall: Option<(Instant, u64, u64)> = None;
    while sent < options.bytes && Instant::now() < deadline {
        let read = relay.received.load(Ordering::Relaxed);
        let forwarded = relay.forwarded.load(Ordering::Relaxed);
        let reached = reach.load(Ordering::Relaxed).max(written_off);
        let unread = sent.saturating_sub(read + lost_before_relay);
        let in_flight = sent.saturating_sub(reached);
        let sink_unread = forwarded.saturating_sub(reached);
        if unread > RELAY_BACKLOG || in_flight > window || sink_unread > SINK_BACKLOG {
            match stall {
                Some((since, r, g)) if r == read && g == reached => {
                    if since.elapsed() > stall_limit {
                        lost_before_relay = sent.saturating_sub(read);
                        written_off = sent;
                        stall = None;
                    }
                }
                _ => stall = Some((Instant::now(), read, reached)),
            }
            thread::sleep(PACE);
            continue;
        }
        stall = None;
        let len = usize::try_from(options.bytes - sent)
            .unwrap_or(usize::MAX)
            .min(payload.len());
        // Each datagram starts with its offset in the stream, so the sink's progress passes
        // over datagrams that were dropped instead of waiting for them.
        let mut offset = sent;
        for datagram in payload[..len].chunks_mut(segment) {
            if let Some(head) = datagram.get_mut(..8) {
                head.copy_from_slice(&offset.to_le_bytes());
            }
            offset += datagram.len() as u64;
        }
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &payload[..len],
            segment_size: (len > segment).then_some(segment),
            src_ip: None,
        };
        match sender.send(&transmit) {
            Ok(()) => {
                sent += len as u64;
                packets += len.div_ceil(segment) as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(PACE),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((sent, packets))
}

/// Counts what reaches the sink until all `total` bytes came, `idle` passed without a
/// datagram, or the deadline. `reach` follows the end of the furthest datagram received.
fn receive_all(
    sink: &Socket,
    total: u64,
    reach: &AtomicU64,
    idle: Duration,
    deadline: Instant,
) -> Result<SinkReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4);
    sink.register(&poll, Token(0))?;
    let mut buffers = RecvBuffers::new();
    let mut report = SinkReport::default();
    let mut heard = Instant::now();
    let mut furthest = 0u64;
    while report.bytes < total {
        let now = Instant::now();
        if now >= deadline || now.duration_since(heard) > idle {
            break;
        }
        let (mut bytes, mut packets) = (0u64, 0u64);
        let n = buffers.recv(sink, |_, datagram, _| {
            bytes += datagram.len() as u64;
            packets += 1;
            if let Some(head) = datagram.first_chunk::<8>() {
                furthest = furthest.max(u64::from_le_bytes(*head) + datagram.len() as u64);
            }
        })?;
        if n == 0 {
            match poll.poll(&mut events, Some(Duration::from_millis(50))) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e.into()),
                _ => continue,
            }
        }
        heard = Instant::now();
        report.bytes += bytes;
        report.packets += packets;
        report.last = Some(heard);
        reach.store(furthest, Ordering::Relaxed);
    }
    Ok(report)
}
