//! The COORD stream's handler (stream kind 2): a node is the coordinator of an introduction
//! (a CONNECT arrives) or its target (an INTRODUCE arrives). The asker's side is in `punch`.
//!
//! Coordinator: introduces only two peers it has live sessions with, when `coordinate` is on
//! and within `Limits::max_introductions` (per node) and `max_introductions_per_peer` (per
//! asker); it adds the address it observes of each side to that side's candidates, filters
//! them, then forwards SYNC and RTT frames between the two streams, at most
//! [`MAX_FORWARDED`] of them, for at most [`INTRODUCTION_TIME`]. It never sees more than
//! addresses and timing; it cannot make either side accept another identity, because every
//! dial names the PeerId it expects and TLS verifies it.
//!
//! Target: expects the asker's connection (pending-punch table), answers with its own
//! candidates, and on each SYNC dials (reversal, or the simultaneous open when it has the
//! smaller PeerId) or opens its pinholes. Sessions it dials go to `accept`, like the ones it
//! accepts: the application on this side did not ask for them, but it is their end.

use super::punch::{dials_first, CoordinatorLie, Incoming};
use super::Node;
use crate::error::{NetError, Result};
use crate::session::stream::{RecvStream, SendStream};
use crate::session::{Route, Session};
use i6p_core::codes;
use i6p_core::coord::{
    check_frame_len, filter_candidates, Candidates, CoordMessage, RefusalReason, SyncMode,
    MAX_ATTEMPTS,
};
use i6p_core::kinds::STREAM_COORD;
use i6p_core::{PeerId, FRAME_HEADER_LEN};
use quinn::{ReadExactError, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long one introduction may last at the coordinator and at the target.
pub const INTRODUCTION_TIME: Duration = Duration::from_secs(30);
/// Time for the first frame of a COORD stream, and for the target's answer.
const ANSWER_TIME: Duration = Duration::from_secs(5);
/// Frames forwarded (coordinator) or served (target) per introduction, at most: three
/// attempts need six (SYNC + RTT each way); the rest is slack.
pub const MAX_FORWARDED: usize = 32;
/// Unknown frame types skipped in a row on a COORD stream before it counts as abuse.
const MAX_SKIPPED: usize = 8;

/// Registers the COORD handler on the node's protocols. It holds the node weakly: being
/// registered must not keep a dropped node alive.
pub(super) fn register(node: &Node) -> Result<()> {
    let weak = Arc::downgrade(&node.inner);
    let handler = move |session: Session, send: SendStream, recv: RecvStream| {
        let weak = weak.clone();
        async move {
            let Some(inner) = weak.upgrade() else { return };
            serve(
                Node { inner },
                session,
                send.into_inner(),
                recv.into_inner(),
            )
            .await;
        }
    };
    node.register_protocol(STREAM_COORD, handler)
}

/// Reads COORD messages into a channel, so the driver can wait on them beside timers and
/// dials (a read cut short by `select!` would lose bytes). The task ends with the stream or
/// as soon as nobody listens.
pub(super) fn read_messages(mut recv: quinn::RecvStream) -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let read = tokio::select! {
                read = read_coord(&mut recv) => read,
                () = tx.closed() => return,
            };
            let end = !matches!(read, Ok(Some(_)));
            if tx.send(read).await.is_err() || end {
                return;
            }
        }
    });
    rx
}

/// The next COORD message; `Ok(None)` when the peer finished the stream. Lengths are checked
/// against the COORD bound before the payload is allocated.
async fn read_coord(recv: &mut quinn::RecvStream) -> Result<Option<CoordMessage>> {
    for _ in 0..MAX_SKIPPED {
        let mut header = [0u8; FRAME_HEADER_LEN];
        match recv.read_exact(&mut header).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(NetError::Protocol(format!("coord stream: {e}"))),
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        check_frame_len(len).map_err(NetError::BadFrame)?;
        let mut payload = vec![0u8; len as usize];
        recv.read_exact(&mut payload)
            .await
            .map_err(|e| NetError::Protocol(format!("coord stream: {e}")))?;
        if let Some(m) = CoordMessage::decode(header[0], &payload).map_err(NetError::BadFrame)? {
            return Ok(Some(m));
        }
    }
    Err(NetError::Protocol(
        "too many unknown frames on a coord stream".into(),
    ))
}

async fn write(send: &mut quinn::SendStream, m: &CoordMessage) -> bool {
    send.write_all(&m.encode_frame()).await.is_ok()
}

fn refusal(reason: RefusalReason, text: impl Into<String>) -> CoordMessage {
    CoordMessage::Refuse {
        reason,
        text: text.into(),
    }
}

/// Serves one COORD stream the peer opened.
async fn serve(node: Node, session: Session, mut send: quinn::SendStream, recv: quinn::RecvStream) {
    // Introductions are not replay-safe: nothing before the handshake completes.
    if session.wait_established().await.is_err() {
        return;
    }
    let mut messages = read_messages(recv);
    let first = tokio::time::timeout(ANSWER_TIME, messages.recv()).await;
    match first {
        Ok(Some(Ok(Some(CoordMessage::Connect { target, candidates })))) => {
            coordinate(&node, &session, send, messages, target, candidates).await;
        }
        Ok(Some(Ok(Some(CoordMessage::Introduce { from, candidates })))) => {
            be_introduced(&node, &session, send, messages, from, candidates).await;
        }
        _ => {
            let _ = send.reset(VarInt::from_u32(codes::COORD_REFUSED));
        }
    }
}

/// The coordinator's checks: coordination on, a sane target with a live session, limits.
fn check(
    node: &Node,
    asker: PeerId,
    target: PeerId,
) -> std::result::Result<(Session, super::punch::IntroductionSlot), CoordMessage> {
    if !node.inner.punch.coordinate {
        return Err(refusal(
            RefusalReason::CoordinationOff,
            "this node does not coordinate",
        ));
    }
    if target == asker || target == node.peer_id() {
        return Err(refusal(
            RefusalReason::BadRequest,
            "the target is the asker or the coordinator",
        ));
    }
    let Some(b) = node.inner.live.any_session(&target) else {
        return Err(refusal(
            RefusalReason::NoSession,
            format!("no live session with {}", target.short()),
        ));
    };
    let slot = node
        .inner
        .punch
        .begin_introduction(asker)
        .map_err(|why| refusal(RefusalReason::Limit, why))?;
    Ok((b, slot))
}

/// `observed` first (it is what the other side's packets must reach), then the peer's own
/// list, filtered for the path the coordinator's session with that peer runs on.
fn with_observed(observed: SocketAddr, c: &Candidates) -> Candidates {
    let mut addrs = vec![observed];
    addrs.extend_from_slice(&c.addrs);
    Candidates {
        addrs: filter_candidates(&addrs, observed.ip().is_loopback()),
        ..c.clone()
    }
}

/// Coordinator side of an introduction (see the module's doc).
async fn coordinate(
    node: &Node,
    a: &Session,
    mut send_a: quinn::SendStream,
    from_a: mpsc::Receiver<Incoming>,
    target: PeerId,
    candidates: Candidates,
) {
    let asker = a.remote_peer_id();
    let lie = node.inner.punch.lie.lock().ok().and_then(|l| l.clone());
    let target = match &lie {
        Some(CoordinatorLie::Target(other)) => *other,
        _ => target,
    };
    let (b, _slot) = match check(node, asker, target) {
        Ok(checked) => checked,
        Err(refused) => {
            let _ = write(&mut send_a, &refused).await;
            let _ = send_a.finish();
            return;
        }
    };
    let introduce = CoordMessage::Introduce {
        from: asker,
        candidates: with_observed(a.remote_addr(), &candidates),
    };
    let answered = tokio::time::timeout(ANSWER_TIME, ask_target(&b, &introduce)).await;
    let (send_b, from_b) = match answered {
        Ok(Ok((send_b, from_b, CoordMessage::Answer(c)))) => {
            let mut answer = CoordMessage::Answer(with_observed(b.remote_addr(), &c));
            if let Some(CoordinatorLie::Addrs(addrs)) = lie {
                answer = CoordMessage::Answer(Candidates {
                    addrs,
                    ..Candidates::default()
                });
            }
            if !write(&mut send_a, &answer).await {
                return;
            }
            (send_b, from_b)
        }
        Ok(Ok((_, _, refused @ CoordMessage::Refuse { .. }))) => {
            let _ = write(&mut send_a, &refused).await;
            let _ = send_a.finish();
            return;
        }
        _ => {
            let why = refusal(RefusalReason::TargetFailed, "the target did not answer");
            let _ = write(&mut send_a, &why).await;
            let _ = send_a.finish();
            return;
        }
    };
    let splice = splice(send_a, from_a, send_b, from_b);
    let _ = tokio::time::timeout(INTRODUCTION_TIME, splice).await;
}

/// Opens a COORD stream to the target, sends INTRODUCE, and returns its first answer (an
/// ANSWER or a REFUSE).
async fn ask_target(
    b: &Session,
    introduce: &CoordMessage,
) -> Result<(quinn::SendStream, mpsc::Receiver<Incoming>, CoordMessage)> {
    let (mut send, recv) = b.open_kind(Some(STREAM_COORD)).await?;
    send.write_all(&introduce.encode_frame())
        .await
        .map_err(|e| NetError::Stream(e.to_string()))?;
    let mut from_b = read_messages(recv);
    match from_b.recv().await {
        Some(Ok(Some(m @ (CoordMessage::Answer(_) | CoordMessage::Refuse { .. })))) => {
            Ok((send, from_b, m))
        }
        _ => Err(NetError::Protocol("the target sent no answer".into())),
    }
}

/// Forwards SYNC and RTT from the asker to the target, and RTT back, until either side ends
/// its stream or [`MAX_FORWARDED`] frames have passed.
async fn splice(
    mut send_a: quinn::SendStream,
    mut from_a: mpsc::Receiver<Incoming>,
    mut send_b: quinn::SendStream,
    mut from_b: mpsc::Receiver<Incoming>,
) {
    for _ in 0..MAX_FORWARDED {
        tokio::select! {
            m = from_a.recv() => match m {
                Some(Ok(Some(m @ (CoordMessage::Sync { .. } | CoordMessage::Rtt { .. })))) => {
                    if !write(&mut send_b, &m).await {
                        break;
                    }
                }
                Some(Ok(Some(_))) => {}
                _ => break,
            },
            m = from_b.recv() => match m {
                Some(Ok(Some(m @ CoordMessage::Rtt { .. }))) => {
                    if !write(&mut send_a, &m).await {
                        break;
                    }
                }
                Some(Ok(Some(_))) => {}
                _ => break,
            },
        }
    }
    let _ = send_a.finish();
    let _ = send_b.finish();
}

/// Target side of an introduction (see the module's doc).
async fn be_introduced(
    node: &Node,
    c: &Session,
    mut send: quinn::SendStream,
    mut messages: mpsc::Receiver<Incoming>,
    from: PeerId,
    candidates: Candidates,
) {
    if from == node.peer_id() || from == c.remote_peer_id() {
        let _ = write(&mut send, &refusal(RefusalReason::BadRequest, "bad asker")).await;
        let _ = send.finish();
        return;
    }
    let guard = match node.inner.punch.expect(from, Route::Punched, None) {
        Ok(guard) => guard,
        Err(e) => {
            let _ = write(&mut send, &refusal(RefusalReason::Limit, e.to_string())).await;
            let _ = send.finish();
            return;
        }
    };
    let theirs = filter_candidates(&candidates.addrs, c.remote_addr().ip().is_loopback());
    if !write(&mut send, &CoordMessage::Answer(node.candidates_for(c))).await {
        return;
    }
    let mut dials = JoinSet::new();
    let deadline = tokio::time::Instant::now() + INTRODUCTION_TIME;
    // A reversal and three punches: an asker cannot make this node dial more often.
    let mut syncs_left = MAX_ATTEMPTS + 1;
    for _ in 0..MAX_FORWARDED {
        tokio::select! {
            m = messages.recv() => match m {
                Some(Ok(Some(CoordMessage::Sync { mode, .. }))) if syncs_left > 0 => {
                    syncs_left -= 1;
                    dials = JoinSet::new();
                    let route = match mode {
                        SyncMode::Reverse => Route::Direct,
                        SyncMode::Punch => Route::Punched,
                    };
                    guard.set_route(route);
                    start_attempt(node, c, &mut dials, from, &theirs, route);
                }
                Some(Ok(Some(m @ CoordMessage::Rtt { .. }))) => {
                    if !write(&mut send, &m).await {
                        break;
                    }
                }
                Some(Ok(Some(_))) => {}
                _ => break,
            },
            Some(joined) = dials.join_next(), if !dials.is_empty() => {
                if let Ok(Ok(session)) = joined {
                    hand_over(node, session, candidates.transfers);
                    dials = JoinSet::new();
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    // The asker ends the stream once its session is up, which may be before this side's
    // dial has finished its HELLO exchange: let running dials end (each is bounded by the
    // handshake timeout) rather than cut them off.
    let _ = send.finish();
    let wait = node.inner.config.handshake_timeout;
    let _ = tokio::time::timeout(wait, async {
        while let Some(joined) = dials.join_next().await {
            if let Ok(Ok(session)) = joined {
                hand_over(node, session, candidates.transfers);
                return;
            }
        }
    })
    .await;
    drop(guard);
}

/// The target's part of an attempt the asker's SYNC starts now: the dial of a reversal, or
/// its side of a simultaneous open (the dial, a little late, or the pinhole datagrams).
fn start_attempt(
    node: &Node,
    c: &Session,
    dials: &mut JoinSet<Result<Session>>,
    from: PeerId,
    theirs: &[SocketAddr],
    route: Route,
) {
    let now = tokio::time::Instant::now();
    // The target's own dials are application sessions on its side: the asker, who wanted
    // them, takes them in as their listener (with `transfers`, this side keeps them away
    // from its application instead; see `hand_over`).
    if route == Route::Direct {
        node.dial_all_at(dials, (from, theirs), now, route, false);
    } else if dials_first(node.peer_id(), from) {
        let at = now + super::punch::dial_margin(c);
        node.dial_all_at(dials, (from, theirs), at, route, false);
    } else {
        node.open_pinholes(theirs, now);
    }
}

/// A session this node dialed for an introduction goes to `accept`, like an incoming one,
/// unless it replaces a relayed session the application already has (it reaches it there),
/// or the asker wants it for `transfers` only: then it is served, as a session the asker
/// had dialed for transfers would be.
fn hand_over(node: &Node, session: Session, transfers: bool) {
    let continues = node.inner.live.add_app(&session);
    if node.inner.config.accept_sessions && !continues && !transfers {
        node.return_session(session);
    }
}
