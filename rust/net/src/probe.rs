//! Hearing the network say no while a dial is in progress.
//!
//! quinn ignores ICMP errors (its socket is unconnected, and Linux reports ICMP errors only on
//! connected UDP sockets or through an error queue quinn does not read), so a dial to a closed
//! port or an unreachable host waits out the whole handshake timeout. Just before a dial's
//! first packet, [`Probe::send`] sends one byte to the same address from a separate
//! *connected* UDP socket: the kernel reports the ICMP port, host or network unreachable that
//! answers it as `ECONNREFUSED` / `EHOSTUNREACH` / `ENETUNREACH` on that socket, and the dial
//! ends at once. A QUIC endpoint drops the byte unanswered (too short for any packet, and for
//! a stateless reset), so a live peer sees nothing and the dial goes on.
//!
//! Bounds: one datagram and one socket per dial, for the dial's handshake only. It goes out
//! before the dial's Initial, never after: a relay or middlebox that sends a flow's answers
//! to whoever spoke last (as the tests' impairment relay does) then still answers the dial.
//! One probe can be lost, or its ICMP rate limited; the dial then fails at its timeout, as
//! without a probe. The probe comes from another port than the node's, so it must not be
//! used where a middlebox filters by port (a dial that punches through a NAT sends from the
//! node's own socket on purpose): there an ICMP error can answer the probe and not the dial.

use crate::error::NetError;
use i6p_core::PeerId;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// A probe sent to a dial's address, listening for the network's refusal.
pub(crate) enum Probe {
    /// Sent; the socket hears the ICMP error, if one comes.
    Sent(UdpSocket),
    /// The network refused at once (the send itself failed).
    Refused(std::io::Error),
    /// No probe (no socket could be had): only the fast path is lost.
    Off,
}

impl Probe {
    /// Sends the probe to `addr`; must run inside tokio.
    pub(crate) fn send(addr: SocketAddr) -> Self {
        let addr = crate::addr::canonical(addr);
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sent = std::net::UdpSocket::bind(local).and_then(|socket| {
            socket.set_nonblocking(true)?;
            socket.connect(addr)?;
            socket.send(&[0])?;
            Ok(socket)
        });
        match sent.and_then(UdpSocket::from_std) {
            Ok(socket) => Self::Sent(socket),
            Err(e) if is_refusal(&e) => Self::Refused(e),
            Err(_) => Self::Off,
        }
    }

    /// Resolves with the error the network reported; never resolves when it reports none
    /// (the caller drops it when its dial ends).
    async fn refusal(self) -> std::io::Error {
        let socket = match self {
            Self::Sent(socket) => socket,
            Self::Refused(e) => return e,
            Self::Off => return std::future::pending().await,
        };
        let mut buf = [0u8; 64];
        loop {
            match socket.recv(&mut buf).await {
                // Something answered the byte: whatever it is, it is not a refusal.
                Ok(_) => continue,
                Err(e) if is_refusal(&e) => return e,
                Err(_) => return std::future::pending().await,
            }
        }
    }
}

/// Runs `dial`, and ends it early with [`NetError::Unreachable`] when the network answers
/// `probe` (sent to `addr`) with a refusal before the dial completes.
pub(crate) async fn unless_unreachable<T>(
    probe: Probe,
    peer: PeerId,
    addr: SocketAddr,
    dial: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    tokio::select! {
        biased;
        result = dial => result,
        cause = probe.refusal() => Err(unreachable_error(peer, addr, &cause)),
    }
}

/// The error of a dial to `addr` that the network refused with `cause`.
fn unreachable_error(peer: PeerId, addr: SocketAddr, cause: &std::io::Error) -> NetError {
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
