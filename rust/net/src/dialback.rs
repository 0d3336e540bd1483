//! Dial-back over stream kind DIALBACK (see `i6p_core::dialback` and docs/PROTOCOL.md):
//! the helper side, which dials the asker from a fresh socket, and the asker side,
//! [`Session::dial_back`].
//!
//! The helper dials from a short-lived client-only endpoint on an ephemeral port, so the
//! asker's firewall or NAT sees a source it never sent to: only an address that takes
//! unsolicited inbound connections answers. The dial requires the asker's PeerId in TLS and
//! is closed with [`codes::DIAL_BACK`] as soon as TLS completes: it never runs a HELLO, so
//! the asker's node never hands it to `accept` and it holds a connection slot there only for
//! a handshake. The IP dialed is always the asker's as the helper observes it.

use crate::control::{read_frame, write_frame_raw};
use crate::error::{NetError, Result};
use crate::reach::{self, Reach, Side};
use crate::session::stream::{RecvStream, SendStream};
use crate::session::{HandlerFuture, ProtocolHandler, Protocols, Session};
use crate::tls::{self, PeerVerifier, TlsIdentity};
use i6p_core::codes;
use i6p_core::dialback::{resolve_target, DialBackOutcome, DialBackRequest, DialBackResult};
use i6p_core::kinds::{FRAME_DIALBACK_REQUEST, FRAME_DIALBACK_RESULT, STREAM_DIALBACK};
use i6p_core::{Identity, PeerId};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::VarInt;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a helper waits for the asker's handshake.
pub const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an asker waits for the answer (the helper's dial plus a margin).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a peer may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers the helper side of dial-back on `protocols`.
pub(crate) fn register(
    protocols: &Protocols,
    identity: &Identity,
    reach: Arc<Reach>,
) -> Result<()> {
    let tls = TlsIdentity::new(identity)?;
    // Its own ticket store: a dial-back neither uses nor spends the node's tickets.
    let (crypto, verifier) = tls::client_crypto(&tls, Arc::default())?;
    let crypto = QuicClientConfig::try_from(crypto).map_err(|e| NetError::Tls(e.to_string()))?;
    let helper = Helper {
        client: quinn::ClientConfig::new(Arc::new(crypto)),
        verifier,
        reach,
        dials: Arc::new(AtomicU64::new(0)),
    };
    protocols.register(STREAM_DIALBACK, Arc::new(helper))
}

/// The helper side of stream kind DIALBACK.
#[derive(Clone)]
struct Helper {
    client: quinn::ClientConfig,
    verifier: Arc<PeerVerifier>,
    reach: Arc<Reach>,
    dials: Arc<AtomicU64>,
}

impl ProtocolHandler for Helper {
    fn handle(&self, session: Session, send: SendStream, recv: RecvStream) -> HandlerFuture {
        let helper = self.clone();
        Box::pin(async move {
            helper
                .serve(session, send.into_inner(), recv.into_inner())
                .await
        })
    }
}

impl Helper {
    async fn serve(
        &self,
        session: Session,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        // A dial-back sends packets: never on the word of a 0-RTT request that may be a replay.
        if session.wait_established().await.is_err() {
            return;
        }
        let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut recv)).await {
            Ok(Ok(Some(f))) if f.kind == FRAME_DIALBACK_REQUEST => {
                DialBackRequest::decode(&f.payload)
            }
            _ => {
                let _ = send.reset(VarInt::from_u32(codes::PROTOCOL_ERROR));
                return;
            }
        };
        let Ok(request) = request else {
            let _ = send.reset(VarInt::from_u32(codes::PROTOCOL_ERROR));
            return;
        };
        let observed = session.remote_addr();
        let result = self.answer(&session, request.target, observed).await;
        let _ = write_frame_raw(&mut send, FRAME_DIALBACK_RESULT, &result.encode()).await;
        let _ = send.finish();
    }

    /// The answer to a request. The slot is given back once the dial is over, before the
    /// answer goes out; the endpoint's driver sends the dial's close and ends with it, after
    /// the connection's short drain (so a slot bounds the dials in flight, and each socket
    /// outlives its slot by that drain at most).
    async fn answer(
        &self,
        session: &Session,
        target: SocketAddr,
        observed: SocketAddr,
    ) -> DialBackResult {
        let refuse = |outcome, addr, reason: &str| DialBackResult {
            outcome,
            addr,
            reason: reason.into(),
        };
        let target = match resolve_target(target, observed) {
            Ok(t) => t,
            Err(o) => {
                let why = match o {
                    DialBackOutcome::OtherIp => {
                        "a dial-back goes only to the IP the helper observes"
                    }
                    _ => "no port to dial",
                };
                return refuse(o, observed, why);
            }
        };
        let peer = session.remote_peer_id();
        let Some(slot) = self.reach.take(Side::Helper, peer) else {
            let why = "a dial-back for this peer is running, or the helper is at its limit";
            return refuse(DialBackOutcome::Busy, target, why);
        };
        let endpoint = match client_endpoint(target) {
            Ok(e) => e,
            Err(e) => return refuse(DialBackOutcome::Unsupported, target, &e.to_string()),
        };
        let (outcome, reason) = self.dial(&endpoint, peer, target).await;
        drop(slot);
        refuse(outcome, target, &reason)
    }

    /// Dials `peer` at `target` from `endpoint`; closes the connection as soon as TLS is done.
    async fn dial(
        &self,
        endpoint: &quinn::Endpoint,
        peer: PeerId,
        target: SocketAddr,
    ) -> (DialBackOutcome, String) {
        let dial = self.dials.fetch_add(1, Ordering::Relaxed);
        let name = crate::resume::dial_name(&peer, dial);
        let connecting = match endpoint.connect_with(self.client.clone(), target, &name) {
            Ok(c) => c,
            Err(e) => {
                return (
                    DialBackOutcome::Unsupported,
                    format!("cannot dial {target}: {e}"),
                )
            }
        };
        let outcome = tokio::time::timeout(DIAL_BACK_TIMEOUT, connecting).await;
        let seen = self.verifier.take_seen(dial);
        match outcome {
            Ok(Ok(conn)) => {
                crate::closing::close(&conn, VarInt::from_u32(codes::DIAL_BACK), b"dial-back done");
                (
                    DialBackOutcome::Reached,
                    format!("handshake with {target} completed"),
                )
            }
            Ok(Err(_)) if seen.is_some_and(|s| s != peer) => (
                DialBackOutcome::Unreached,
                format!("another peer answered at {target}"),
            ),
            Ok(Err(e)) => (DialBackOutcome::Unreached, format!("{target}: {e}")),
            Err(_) => (
                DialBackOutcome::Unreached,
                format!("no handshake with {target} within {DIAL_BACK_TIMEOUT:?}"),
            ),
        }
    }
}

/// A client-only endpoint on an ephemeral port of `target`'s family.
fn client_endpoint(target: SocketAddr) -> Result<quinn::Endpoint> {
    let bind: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    quinn::Endpoint::client(bind).map_err(|e| NetError::Io(format!("no {bind} socket: {e}")))
}

impl Session {
    /// Asks the peer to dial this node back, from another port, at the IP it observes for
    /// us and at `port` (None: the port it observes). True when its handshake got through
    /// (the address takes unsolicited inbound connections), false when it did not. The
    /// answer, and the peer's observation of us, go into the node's reachability.
    ///
    /// Refusals are [`NetError::DialBackRefused`]: the peer does not offer dial-back, is
    /// busy, or one is already running with it from this node.
    pub async fn dial_back(&self, port: Option<u16>) -> Result<bool> {
        self.wait_established().await?;
        let refused = |reason, message: &str| NetError::DialBackRefused {
            reason,
            message: message.into(),
        };
        if !reach::offers_dial_back(self) {
            return Err(refused("unsupported", "the peer does not offer dial-back"));
        }
        let node = reach::of(self);
        let _slot = match &node {
            Some(r) => Some(r.take(Side::Asker, self.remote_peer_id()).ok_or_else(|| {
                refused(
                    "busy",
                    "a dial-back with this peer is running, or this node is at its limit",
                )
            })?),
            None => None,
        };
        let target = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port.unwrap_or(0)));
        let result = self.ask_dial_back(target).await?;
        let reached = match result.outcome {
            DialBackOutcome::Reached => Some(true),
            DialBackOutcome::Unreached => Some(false),
            _ => None,
        };
        if let Some(r) = &node {
            r.answered(self, crate::addr::canonical(result.addr), reached);
        }
        match result.outcome {
            DialBackOutcome::OtherIp => Err(refused("other_ip", &result.reason)),
            DialBackOutcome::Busy => Err(refused("busy", &result.reason)),
            DialBackOutcome::Unsupported => Err(refused("unsupported", &result.reason)),
            o => Ok(o == DialBackOutcome::Reached),
        }
    }

    /// Sends one DIALBACK_REQUEST for `target` as it is (tests send ones naming another IP)
    /// and returns the helper's answer.
    pub async fn ask_dial_back(&self, target: SocketAddr) -> Result<DialBackResult> {
        let (mut send, mut recv) = self.open_kind(Some(STREAM_DIALBACK)).await?;
        let request = DialBackRequest { target }.encode();
        write_frame_raw(&mut send, FRAME_DIALBACK_REQUEST, &request).await?;
        let _ = send.finish();
        let frame = tokio::time::timeout(ANSWER_TIMEOUT, read_frame(&mut recv))
            .await
            .map_err(|_| {
                NetError::Timeout(format!("no dial-back answer within {ANSWER_TIMEOUT:?}"))
            })??
            .ok_or_else(|| NetError::Protocol("dial-back stream ended without an answer".into()))?;
        if frame.kind != FRAME_DIALBACK_RESULT {
            return Err(NetError::Protocol(format!(
                "expected a dial-back result, got frame type {:#04x}",
                frame.kind
            )));
        }
        DialBackResult::decode(&frame.payload).map_err(NetError::BadFrame)
    }
}
