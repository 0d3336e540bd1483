//! The QUIC + TLS part of a dial: the first flight, the handshake with the PeerId checked,
//! and dialing again while a peer at its limit refuses (before any handshake work).

use super::{handshake_error, no_session_in_time, Node};
use crate::error::{NetError, Result};
use crate::session::Established;
use crate::tls;
use i6p_core::{codes, PeerId};
use quinn::VarInt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Node {
    /// [`Self::finish_dial`], dialing again after a short pause (jittered, doubling up to 1 s)
    /// while the peer refuses the connection before any handshake work because it is at a
    /// limit, for as long as the deadline leaves room.
    pub(super) async fn finish_dial_retrying(
        &self,
        connecting: quinn::Connecting,
        peer: PeerId,
        addr: SocketAddr,
        dial: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(Established, bool)> {
        let (mut connecting, mut dial) = (connecting, dial);
        let mut pause = Duration::from_millis(50);
        let mut refused: Option<String> = None;
        loop {
            // Once refused, a retry cut short by the deadline reports the refusal: it says
            // more than "no session in time" (the node is at a limit).
            let attempt =
                tokio::time::timeout_at(deadline, self.finish_dial(connecting, peer, dial));
            let result = match (attempt.await, refused.take()) {
                (Ok(result), _) => result,
                (Err(_), Some(why)) => return Err(NetError::Busy(why)),
                (Err(_), None) => {
                    return Err(no_session_in_time(
                        addr,
                        self.inner.config.handshake_timeout,
                    ))
                }
            };
            match result {
                Err(NetError::Busy(why)) => {
                    let wait = pause.mul_f64(rand::random_range(0.5..1.5));
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(NetError::Busy(why));
                    }
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    (connecting, dial) = self.start_dial(peer, addr)?;
                    refused = Some(why);
                }
                other => return other,
            }
        }
    }

    /// Sends the first flight of a dial to `peer` at `addr`.
    pub(super) fn start_dial(
        &self,
        peer: PeerId,
        addr: SocketAddr,
    ) -> Result<(quinn::Connecting, u64)> {
        let addr = self.dial_target(peer, addr)?;
        let dial = self.inner.dials.fetch_add(1, Ordering::Relaxed);
        let name = crate::resume::dial_name(&peer, dial);
        let mut client = self.inner.client.clone();
        if let Some(transport) = self.inner.paths.for_remote(addr)? {
            client.transport_config(transport);
        }
        let connecting = self
            .endpoint()?
            .connect_with(client, addr, &name)
            .map_err(|e| NetError::Handshake(format!("cannot dial {addr}: {e}")))?;
        Ok((connecting, dial))
    }

    /// The rest of the QUIC + TLS part of a dial; true with it if the handshake resumed.
    pub(super) async fn finish_dial(
        &self,
        connecting: quinn::Connecting,
        peer: PeerId,
        dial: u64,
    ) -> Result<(Established, bool)> {
        let conn = connecting.await;
        // The verifier runs on full handshakes only: no note from it means a resumed one.
        let seen = self.inner.verifier.take_seen(dial);
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                return Err(match seen {
                    Some(actual) if actual != peer => NetError::PeerIdMismatch {
                        expected: peer,
                        actual,
                    },
                    _ => handshake_error(&e),
                })
            }
        };
        let (remote_peer_id, remote_key) = tls::peer_of_connection(&conn)?;
        if remote_peer_id != peer {
            // Unreachable with the verifier and the tickets keyed by PeerId; kept as a second
            // line of defence.
            crate::closing::close(
                &conn,
                VarInt::from_u32(codes::PROTOCOL_ERROR),
                b"peer id mismatch",
            );
            return Err(NetError::PeerIdMismatch {
                expected: peer,
                actual: remote_peer_id,
            });
        }
        Ok((
            self.established(conn, remote_peer_id, remote_key),
            seen.is_none(),
        ))
    }
}
