//! Hearing the network say no while a dial is in progress.
//!
//! quinn ignores ICMP errors (its socket is unconnected, and Linux reports ICMP errors only on
//! connected UDP sockets or through an error queue quinn does not read), so a dial to a closed
//! port or an unreachable host waits out the whole handshake timeout. While the handshake
//! runs, [`unreachable`] sends a few one-byte datagrams to the same address from a separate
//! *connected* UDP socket: the kernel reports the ICMP port or host unreachable that answers
//! them as `ECONNREFUSED` / `EHOSTUNREACH` / `ENETUNREACH` on that socket, and the dial ends at
//! once. A QUIC endpoint drops the byte unanswered (too short for any packet, and for a
//! stateless reset), so a live peer sees nothing and the dial goes on.
//!
//! Bounds: at most [`PROBES`] datagrams per dial, one socket for the dial's handshake only.
//! The probe comes from another port than the node's, so it must not be used where a
//! middlebox filters by port (a dial that punches through a NAT sends from the node's own
//! socket on purpose): there an ICMP error can answer the probe and not the dial.

use crate::error::NetError;
use i6p_core::PeerId;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// When each probe datagram is sent, from the start of the dial: ICMP errors can be lost or
/// rate limited, so a few are sent, early ones close together.
pub const PROBES: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(1000),
];

/// Runs `dial`, and ends it early with [`NetError::Unreachable`] when the network reports
/// `addr` unreachable before it completes.
pub(crate) async fn unless_unreachable<T>(
    peer: PeerId,
    addr: SocketAddr,
    dial: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    tokio::select! {
        biased;
        result = dial => result,
        cause = unreachable(addr) => Err(unreachable_error(peer, addr, &cause)),
    }
}

/// The error of a dial to `addr` that the network refused with `cause`.
pub(crate) fn unreachable_error(
    peer: PeerId,
    addr: SocketAddr,
    cause: &std::io::Error,
) -> NetError {
    let what = match cause.kind() {
        ErrorKind::ConnectionRefused => "port unreachable",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        _ => "unreachable",
    };
    NetError::Unreachable(format!(
        "peer {} at {} is unreachable: ICMP {what} ({cause})",
        peer.short(),
        crate::addr::format_addr(&crate::addr::canonical(addr))
    ))
}

/// Resolves with the error the network reported for `addr`; never resolves when it reports
/// none (the caller drops it when its dial ends).
pub(crate) async fn unreachable(addr: SocketAddr) -> std::io::Error {
    match probe(addr).await {
        Some(e) => e,
        None => std::future::pending().await,
    }
}

async fn probe(addr: SocketAddr) -> Option<std::io::Error> {
    let addr = crate::addr::canonical(addr);
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A socket that cannot be had (no descriptors left, say) only costs the fast path.
    let socket = UdpSocket::bind(local).await.ok()?;
    if let Err(e) = socket.connect(addr).await {
        return is_refusal(&e).then_some(e);
    }
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    for at in PROBES {
        if let Err(e) = socket.send(&[0]).await {
            return is_refusal(&e).then_some(e);
        }
        let next = PROBES.iter().find(|&&t| t > at).map(|&t| start + t);
        let listen = async {
            loop {
                match socket.recv(&mut buf).await {
                    // The peer answered the byte: whatever it is, it is not a refusal.
                    Ok(_) => continue,
                    Err(e) if is_refusal(&e) => return e,
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
        match next {
            Some(next) => {
                if let Ok(e) = tokio::time::timeout_at(next, listen).await {
                    return Some(e);
                }
            }
            None => return Some(listen.await),
        }
    }
    None
}

/// Errors a connected UDP socket reports for an ICMP destination unreachable.
fn is_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
    )
}

/// The error of a session returned before its handshake (0-RTT) whose peer never answered.
pub(crate) fn silent_error(peer: PeerId, addr: SocketAddr, timeout: Duration) -> NetError {
    NetError::Unreachable(format!(
        "peer {} at {} did not answer: 0-RTT session not established in {timeout:?}",
        peer.short(),
        crate::addr::format_addr(&crate::addr::canonical(addr))
    ))
}
