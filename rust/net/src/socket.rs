//! The UDP socket's kernel buffers, sized with the links it carries.
//!
//! One socket carries every connection of a node. Its receive buffer must hold the datagrams
//! that arrive while the endpoint is not reading (a scheduling hiccup, a burst), and its send
//! buffer the bursts the endpoint writes; on a link with a large bandwidth × RTT that is more
//! than a default buffer. Each session's window tuner reports its receive window (about twice
//! the path's bandwidth × RTT) here, and both buffers grow, never shrink, to the largest
//! report, within [`MAX_SOCKET_BUFFER`]. The kernel caps a plain request at
//! `net.core.rmem_max`/`wmem_max`; a process with CAP_NET_ADMIN may go past that with
//! SO_RCVBUFFORCE/SO_SNDBUFFORCE, which are tried when the plain request falls short.

use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use std::net::UdpSocket;
use std::sync::Mutex;

/// What a node's socket asks for at first.
pub const INITIAL_SOCKET_BUFFER: usize = 8 << 20;
/// The most a node's socket buffers grow to.
pub const MAX_SOCKET_BUFFER: usize = 64 << 20;

/// A handle on a node's socket for sizing its buffers: a duplicate descriptor of the socket
/// quinn owns, and the size asked for so far. The descriptor is let go when the node closes,
/// or it would keep the port bound.
pub struct SocketBuffers {
    state: Mutex<(Option<UdpSocket>, usize)>,
}

impl SocketBuffers {
    /// Sizes `socket`'s buffers to [`INITIAL_SOCKET_BUFFER`] and keeps a handle for growing them.
    pub(crate) fn new(socket: &UdpSocket) -> std::io::Result<Self> {
        let buffers = Self {
            state: Mutex::new((Some(socket.try_clone()?), 0)),
        };
        buffers.grow(INITIAL_SOCKET_BUFFER);
        Ok(buffers)
    }

    /// Grows both buffers to `bytes` (bounded) if they were asked for less so far.
    pub(crate) fn grow(&self, bytes: usize) {
        let bytes = bytes.min(MAX_SOCKET_BUFFER);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (Some(fd), asked) = &mut *state else {
            return;
        };
        if bytes <= *asked {
            return;
        }
        *asked = bytes;
        // Failures are not errors: a smaller buffer only costs drops under bursts.
        let fd = &*fd;
        if setsockopt(fd, sockopt::RcvBuf, &bytes).is_err()
            || getsockopt(fd, sockopt::RcvBuf).is_ok_and(|got| got < bytes)
        {
            let _ = setsockopt(fd, sockopt::RcvBufForce, &bytes);
        }
        if setsockopt(fd, sockopt::SndBuf, &bytes).is_err()
            || getsockopt(fd, sockopt::SndBuf).is_ok_and(|got| got < bytes)
        {
            let _ = setsockopt(fd, sockopt::SndBufForce, &bytes);
        }
        tracing::debug!(bytes, "socket buffers grown");
    }

    /// The kernel's (receive, send) buffer sizes now (Linux reports twice what was set: the
    /// other half is its bookkeeping).
    /// (0, 0) once the node is closed.
    pub fn sizes(&self) -> (usize, usize) {
        let Ok(state) = self.state.lock() else {
            return (0, 0);
        };
        let Some(fd) = &state.0 else {
            return (0, 0);
        };
        (
            getsockopt(fd, sockopt::RcvBuf).unwrap_or(0),
            getsockopt(fd, sockopt::SndBuf).unwrap_or(0),
        )
    }

    /// Moves to a new socket (the node rebound): the old descriptor is let go, and the new
    /// socket gets the size asked for so far.
    pub(crate) fn replace(&self, socket: &UdpSocket) -> std::io::Result<()> {
        let fd = socket.try_clone()?;
        let asked = match self.state.lock() {
            Ok(mut state) => {
                let asked = state.1;
                *state = (Some(fd), 0);
                asked
            }
            Err(_) => return Ok(()),
        };
        self.grow(asked.max(INITIAL_SOCKET_BUFFER));
        Ok(())
    }

    /// Lets go of the descriptor (the node is closing).
    pub(crate) fn release(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = None;
        }
    }
}

impl SocketBuffers {
    /// Sends one datagram from the node's own socket (the one quinn owns): a coordinated
    /// connection opens the firewall or NAT mapping its peer was told about with it. Best
    /// effort: a full buffer or an error only loses a packet the procedure does not need.
    pub(crate) fn send_to(&self, data: &[u8], addr: std::net::SocketAddr) -> bool {
        let Ok(state) = self.state.lock() else {
            return false;
        };
        state
            .0
            .as_ref()
            .is_some_and(|socket| socket.send_to(data, addr).is_ok())
    }
}
