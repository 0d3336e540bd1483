//! Fetching by ticket: getting sessions to the providers a ticket (or several) names,
//! reconnecting to a single provider after a dropped connection, and handing the sessions to
//! the round driver. Sessions come from [`crate::Node::transfer_session`]: a live one to the
//! provider when the node has one, so concurrent fetches share one connection per provider.

use super::options::{FetchOptions, FetchOutcome, Progress, ProviderOutcome};
use super::round::{fetch_from, fetch_to_file};
use crate::error::{NetError, Result};
use crate::node::TransferLease;
use crate::session::Session;
use i6p_core::codes::{self, ErrorCode};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A session to the ticket's provider for a transfer: a live one, else one dialed at
/// `addrs` or made through the ticket's rendezvous nodes
/// ([`crate::Node::transfer_session_via`]). A ticket that lists no address (one naming its
/// provider by key) has the provider found by discovery first
/// ([`crate::Node::transfer_session_by_discovery`]).
async fn provider_session(
    node: &crate::Node,
    ticket: &i6p_core::ticket::Ticket,
    addrs: &[std::net::SocketAddr],
) -> Result<TransferLease> {
    let (peer, contacts) = (ticket.peer_id, &ticket.rendezvous);
    if node.live_session(&peer).is_some() {
        return node.transfer_session(peer, addrs).await;
    }
    if addrs.is_empty() {
        let found = node.transfer_session_by_discovery(peer, ticket.key).await;
        return match found {
            Err(NetError::NodeClosed) => Err(NetError::NodeClosed),
            Err(_) if !contacts.is_empty() => node.transfer_session_via(peer, &[], contacts).await,
            other => other,
        };
    }
    node.transfer_session_via(peer, addrs, contacts).await
}

/// Fetches a ticket's blob into `dest` from its provider, reconnecting after a dropped
/// connection as `options.reconnect` says (a reconnect to a peer met before goes in 0-RTT).
/// Figures in the outcome cover every attempt.
pub async fn fetch_ticket(
    node: &crate::Node,
    ticket: &i6p_core::ticket::Ticket,
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    let start = Instant::now();
    progress.started.get_or_init(|| start);
    let policy = options.reconnect;
    let (mut left, mut delay) = (policy.attempts, policy.backoff);
    // A provider that never answered is reported at once; only a dropped one is retried.
    let mut connected = false;
    loop {
        let before = progress.done.load(Ordering::Relaxed);
        let attempt = async {
            let session = provider_session(node, ticket, &ticket.addrs).await;
            let session = match session {
                Ok(s) => s,
                Err(e) if !connected => return Err((e, false)),
                Err(e) => return Err((e, true)),
            };
            connected = true;
            let outcome = fetch_to_file(
                &session,
                ticket.hash,
                ticket.size,
                dest.clone(),
                options.clone(),
                progress.clone(),
            )
            .await
            .map_err(|e| session.explain(e));
            if outcome.is_ok() {
                settle(&[Session::clone(&session)]).await;
            }
            // The lease goes with `session`: the connection stays for the next transfer.
            outcome.map_err(|e| (e, true))
        };
        match attempt.await {
            Ok(mut outcome) => {
                outcome.bytes_fetched = progress.fetched.load(Ordering::Relaxed);
                outcome.bytes_reused = progress.reused.get().copied().unwrap_or(0);
                outcome.duration = start.elapsed();
                outcome.first_byte = progress.first_byte();
                return Ok(outcome);
            }
            Err((e, true)) if link_dropped(&e) && left > 0 => {
                if progress.done.load(Ordering::Relaxed) > before {
                    (left, delay) = (policy.attempts, policy.backoff);
                }
                left -= 1;
                tracing::info!(error = %e, ?delay, left, "fetch lost its provider; reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_backoff);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Fetches a blob from several providers at once (tickets naming the same blob). Providers
/// are dialed together; those that cannot be reached are reported in the outcome and the
/// others share the work (see [`fetch_from`]). One ticket: [`fetch_ticket`], with its
/// reconnection policy.
pub async fn fetch_tickets(
    node: &crate::Node,
    tickets: &[i6p_core::ticket::Ticket],
    dest: PathBuf,
    options: FetchOptions,
    progress: Arc<Progress>,
) -> Result<FetchOutcome> {
    progress.started.get_or_init(Instant::now);
    let Some(first) = tickets.first() else {
        return Err(NetError::Config("a fetch needs at least one ticket".into()));
    };
    if tickets.len() == 1 {
        return fetch_ticket(node, first, dest, options, progress).await;
    }
    if let Some(other) = tickets
        .iter()
        .find(|t| t.hash != first.hash || t.size != first.size)
    {
        return Err(NetError::Config(format!(
            "tickets name different blobs ({} bytes and {} bytes, or different hashes)",
            first.size, other.size
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let tickets: Vec<_> = tickets.iter().filter(|t| seen.insert(t.peer_id)).collect();
    let (sessions, unreachable) = dial_all(node, &tickets).await?;
    if sessions.is_empty() {
        let error = unreachable.into_iter().find_map(|p| p.error);
        return Err(error.unwrap_or_else(|| NetError::Io("no provider reachable".into())));
    }
    let leased: Vec<Session> = sessions.iter().map(|s| Session::clone(s)).collect();
    let outcome = fetch_from(&leased, first.hash, first.size, dest, options, progress).await;
    if outcome.is_ok() {
        settle(&leased).await;
    }
    drop(sessions);
    let mut outcome = outcome?;
    outcome.providers.extend(unreachable);
    Ok(outcome)
}

/// Dials every ticket's provider at once. Once one has answered, the others get a little
/// longer (a provider that is down would otherwise hold the fetch for a whole handshake
/// timeout); later ones are reported as unreachable. Returns the sessions, in the tickets'
/// order, and what became of the others.
async fn dial_all(
    node: &crate::Node,
    tickets: &[&i6p_core::ticket::Ticket],
) -> Result<(Vec<TransferLease>, Vec<ProviderOutcome>)> {
    let mut dials = tokio::task::JoinSet::new();
    // The fetch's dialing work is bounded too: the addresses are shared out among providers.
    let per_provider = (MAX_DIAL_ADDRS_PER_FETCH / tickets.len()).max(1);
    for (i, ticket) in tickets.iter().enumerate() {
        let addrs = ticket
            .addrs
            .iter()
            .take(per_provider)
            .copied()
            .collect::<Vec<_>>();
        let (node, ticket) = (node.clone(), (*ticket).clone());
        dials.spawn(async move { (i, provider_session(&node, &ticket, &addrs).await) });
    }
    let started = tokio::time::Instant::now();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut dialed: Vec<Option<Result<TransferLease>>> = (0..tickets.len()).map(|_| None).collect();
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, dials.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => dials.join_next().await,
        };
        let Some(joined) = next else {
            break;
        };
        let (i, result) = joined.map_err(|e| NetError::Io(format!("dial task failed: {e}")))?;
        if result.is_ok() && deadline.is_none() {
            let waited = started.elapsed();
            deadline = Some(tokio::time::Instant::now() + (waited * 2).max(DIAL_GRACE));
        }
        dialed[i] = Some(result);
    }
    dials.abort_all();
    let mut sessions = Vec::new();
    let mut unreachable = Vec::new();
    for (ticket, result) in tickets.iter().zip(dialed) {
        match result {
            Some(Ok(session)) => sessions.push(session),
            Some(Err(e)) => unreachable.push(ProviderOutcome {
                peer: ticket.peer_id,
                bytes: 0,
                error: Some(e),
            }),
            None => unreachable.push(ProviderOutcome {
                peer: ticket.peer_id,
                bytes: 0,
                error: Some(NetError::Handshake(format!(
                    "no answer within {:?} of the first provider's",
                    DIAL_GRACE
                ))),
            }),
        }
    }
    Ok((sessions, unreachable))
}

/// Waits one round trip on the sessions of a fetch that succeeded, so the providers have our
/// last acknowledgements before the fetch returns: their figures of what we received
/// (`served`) then end at the size even if we exit, or the path goes, at once. Closing the
/// sessions used to give this; sessions kept for the next transfer stay open. The PINGs go
/// out together, and a provider that does not answer holds the fetch up for
/// [`SETTLE_TIMEOUT`] at most.
async fn settle(sessions: &[Session]) {
    let mut pings = tokio::task::JoinSet::new();
    for session in sessions.iter().filter(|s| s.is_usable()) {
        let session = session.clone();
        pings.spawn(async move { session.ping().await.map(|_| ()) });
    }
    let _ = tokio::time::timeout(SETTLE_TIMEOUT, pings.join_all()).await;
}

/// The longest [`settle`] waits.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How much longer than the first provider the others have to answer, at least: room for
/// one lost handshake packet's retransmission (quinn's first PTO, from its 333 ms initial RTT
/// estimate, is about 1 s), so one unlucky loss does not drop a provider.
const DIAL_GRACE: Duration = Duration::from_secs(2);

/// Addresses a fetch from several providers dials in all, at most (8 providers get 4 each,
/// of their ticket's up to 16; each provider's are dialed as [`crate::dial`] says).
pub const MAX_DIAL_ADDRS_PER_FETCH: usize = 32;

/// Errors after which a new connection may succeed where the old one failed (a provider
/// that is unavailable or busy may serve a later request, one that was killed may restart).
/// A provider that said it is shutting down (closed with [`codes::NODE_CLOSED`]) is not
/// dialed again: its close is the answer.
fn link_dropped(e: &NetError) -> bool {
    if let NetError::ConnectionLost { code, by_peer, .. } = e {
        return !(*by_peer && *code == u64::from(codes::NODE_CLOSED));
    }
    matches!(
        e,
        NetError::Handshake(_) | NetError::Unreachable(_) | NetError::Busy(_) | NetError::Stream(_)
    ) || matches!(e, NetError::Refused { code, .. } if ErrorCode::from_u16(*code).is_transient())
}
