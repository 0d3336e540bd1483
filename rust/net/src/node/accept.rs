//! The listener side of a node: admission of incoming connections (before any
//! cryptography), then the TLS handshake and the HELLO exchange of each in a task of its own,
//! within the handshake timeout.
//!
//! Invariant: a connection counts against the limits from admission until it ends, and a
//! session reaches `accept` only once its HELLO exchange is done; sessions the application
//! does not accept in time are refused with BUSY, never held half-open.

use super::{close_code_for, handshake_error};
use crate::addr;
use crate::error::{NetError, Result};
use crate::limits::{Admission, ConnectionSlot, Connections};
use crate::resume::ServerConfigs;
use crate::session::{now_ms, Established, Protocols, Route, Session, COORDINATED};
use crate::socket::SocketBuffers;
use crate::tls;
use crate::transport::Windows;
use i6p_core::codes;
use i6p_core::{Hello, Identity, Role};
use quinn::{Endpoint, VarInt};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What every incoming connection is set up with.
#[derive(Clone)]
pub(super) struct AcceptSettings {
    /// Time for the TLS handshake plus the HELLO exchange.
    pub(super) timeout: Duration,
    pub(super) windows: Windows,
    /// The node's socket, whose buffers grow with the windows (none: the relayed endpoint).
    pub(super) buffers: Option<Arc<SocketBuffers>>,
    pub(super) max_queued_streams: usize,
    pub(super) liveness: Option<Duration>,
    /// Hand sessions to `accept` (see [`super::NodeConfig::accept_sessions`]).
    pub(super) deliver: bool,
    /// Each connection's server config, which charges its tickets to the client's address.
    pub(super) configs: Arc<ServerConfigs>,
    /// The node's protocols, for every session it accepts.
    pub(super) protocols: Arc<Protocols>,
    /// The node's count of requests served as early data.
    pub(super) early_requests: Arc<AtomicU64>,
    /// Set when the node closes.
    pub(super) closed: Arc<AtomicBool>,
    /// The node's live sessions, where application sessions are listed for transfers.
    pub(super) live: Arc<super::reuse::LiveSessions>,
    /// The node's reflections, which every session feeds.
    pub(super) reach: Arc<crate::reach::Reach>,
    /// How the endpoint's packets travel (relayed for the endpoint over circuits).
    pub(super) route: crate::session::Route,
    /// The circuits under the relayed endpoint, whose ends end its sessions.
    pub(super) circuits: Option<Arc<crate::relay::socket::Circuits>>,
    /// The peers this node is punching to: their incoming sessions are routed and claimed.
    pub(super) punch: Arc<super::punch::PunchState>,
    /// The node's address book, which every verified session tells where its peer is.
    pub(super) book: Arc<crate::discovery::AddressBook>,
}

/// The listener's HELLO, stamped and given its addresses for each connection.
pub(super) fn listener_hello(config: &super::NodeConfig) -> Result<Arc<Hello>> {
    let hello = Hello {
        version: i6p_core::PROTOCOL_VERSION,
        timestamp_ms: 0,
        capabilities: config.advertised_capabilities(),
        listen_addrs: Vec::new(),
        transfer_only: false,
    };
    hello.validate()?;
    Ok(Arc::new(hello))
}

/// What an endpoint's listener runs with: the node's identity and HELLO, the settings of
/// its connections, the limits' accounting, and where finished sessions go.
#[derive(Clone)]
pub(super) struct Listener {
    pub(super) identity: Identity,
    pub(super) hello: Arc<Hello>,
    pub(super) settings: AcceptSettings,
    pub(super) connections: Arc<Connections>,
    pub(super) tx: mpsc::Sender<Session>,
}

/// Admits incoming connections and completes each in a task of its own, handing finished
/// sessions to `tx` (when the node delivers them).
pub(super) async fn accept_loop(endpoint: Endpoint, listener: Listener) {
    let Listener {
        identity,
        hello,
        settings,
        connections,
        tx,
    } = listener;
    while let Some(incoming) = endpoint.accept().await {
        // Decided before any cryptography: a refusal or a Retry costs one stateless packet.
        let slot = match connections.admit(
            incoming.remote_address(),
            incoming.remote_address_validated(),
            std::time::Instant::now(),
        ) {
            Admission::Accept(slot) => slot,
            Admission::Retry if incoming.may_retry() => {
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            Admission::Retry => {
                incoming.refuse();
                continue;
            }
            Admission::Refuse(why) => {
                tracing::debug!(addr = %incoming.remote_address(), why, "connection refused");
                incoming.refuse();
                continue;
            }
        };
        let ours = stamped(&hello, &endpoint, settings.circuits.is_none());
        let identity = identity.clone();
        let (tx, settings) = (tx.clone(), settings.clone());
        let reach = settings.reach.clone();
        let circuits = settings.circuits.clone();
        tokio::spawn(async move {
            let mut slot = slot;
            let (deliver, live) = (settings.deliver, settings.live.clone());
            let punch = settings.punch.clone();
            let accepted = accept_one(incoming, &identity, &ours, settings, &mut slot).await;
            slot.handshake_done();
            let session = match accepted {
                Ok(session) => session,
                Err(e) => {
                    tracing::debug!(error = %e, "incoming handshake failed");
                    return;
                }
            };
            // What a peer observes through a relay is a synthetic circuit address: not ours.
            if circuits.is_none() {
                reach.link(&session);
            }
            let conn = session.inner_conn().clone();
            if let Some(circuits) = &circuits {
                crate::relay::circuit::attach(circuits, session.remote_addr(), &session);
            }
            // A relayed session is never the answer to a punch (that one is direct).
            let punching = circuits.is_none().then_some(&*punch);
            deliver_session(session, &live, punching, deliver, &tx);
            // The connection counts against the limits until it ends.
            conn.closed().await;
            drop(slot);
        });
    }
}

/// The listener's HELLO for one connection: stamped now, with the endpoint's addresses
/// when it has dialable ones (the relayed endpoint's is synthetic: no peer can dial it).
fn stamped(hello: &Hello, endpoint: &Endpoint, dialable: bool) -> Hello {
    let mut ours = hello.clone();
    ours.timestamp_ms = now_ms();
    if dialable {
        ours.listen_addrs = endpoint
            .local_addr()
            .map(addr::reachable_addrs)
            .unwrap_or_default()
            .into_iter()
            .take(i6p_core::hello::MAX_LISTEN_ADDRS)
            .collect();
    }
    ours
}

/// Lists a completed incoming session and hands it to whoever wants it: the `connect_to`
/// that is punching to its peer, else `accept` (when the node delivers sessions).
fn deliver_session(
    session: Session,
    live: &super::reuse::LiveSessions,
    punch: Option<&super::punch::PunchState>,
    deliver: bool,
    tx: &mpsc::Sender<Session>,
) {
    // A session the peer opened for transfers only is served, never delivered: the
    // application did not ask for it (and it takes no room in the accept queue).
    let for_app = !session.transfer_only();
    // A session that replaces a relayed one the node has with this peer is not new to the
    // application: it reaches it through the relayed session's handles.
    let continues = for_app && live.add_app(&session);
    // A coordinated connection this node asked for goes to its `connect_to`.
    let session = match punch {
        Some(punch) => match punch.claim(session) {
            Some(session) => session,
            None => return,
        },
        None => session,
    };
    // Never wait for room: sessions the application does not accept in time are refused,
    // not held half-open.
    if deliver && for_app && !continues {
        if let Err(mpsc::error::TrySendError::Full(session)) = tx.try_send(session) {
            session.refuse(codes::BUSY, "too many sessions waiting to be accepted");
        }
    }
}

/// Completes one incoming connection: TLS, then the HELLO exchange, within `timeout`.
///
/// Every connection is taken in 0.5-RTT, and our HELLO is sent then (it needs only the TLS
/// exporter). A resumed connection's peer is known from its ticket as soon as the
/// ClientHello is read, so PINGs and GETs that came as early data are served at once.
/// Everything else waits for the handshake to complete (see `session.rs`).
async fn accept_one(
    incoming: quinn::Incoming,
    identity: &Identity,
    ours: &Hello,
    settings: AcceptSettings,
    slot: &mut ConnectionSlot,
) -> Result<Session> {
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let tls_late = || NetError::Handshake("tls handshake timed out".into());
    let (connecting, exporter) = settings
        .configs
        .accept(incoming)
        .map_err(|e| handshake_error(&e))?;
    let (conn, handshake) = match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => {
            let conn = tokio::time::timeout_at(deadline, connecting)
                .await
                .map_err(|_| tls_late())?
                .map_err(|e| handshake_error(&e))?;
            (conn, None)
        }
    };
    let resumed = handshake.is_some() && resumes(&conn, exporter.as_ref().map(|(_, t)| &**t));
    // Our HELLO goes out with our first flight (0.5-RTT), before we know who the dialer is.
    let early =
        exporter.and_then(|(x, _)| crate::session::send_early_hello(&conn, &x, identity, ours));
    let mut handshake = handshake;
    if !resumed {
        if let Some(accepted) = handshake.take() {
            // Resolves when the handshake completes (its value says whether 0-RTT was taken)
            // or fails.
            tokio::time::timeout_at(deadline, accepted)
                .await
                .map_err(|_| tls_late())?;
            if let Some(e) = conn.close_reason() {
                return Err(handshake_error(&e));
            }
        }
    }
    let (remote_peer_id, remote_key) = tls::peer_of_connection(&conn)?;
    if let Err(why) = slot.identified(remote_peer_id) {
        crate::closing::close(&conn, VarInt::from_u32(codes::BUSY), why.as_bytes());
        return Err(NetError::Handshake(why.into()));
    }
    let est = Established {
        conn: conn.clone(),
        remote_peer_id,
        remote_key,
        role: Role::Listener,
        node_closed: settings.closed,
        node_early_requests: settings.early_requests,
        protocols: settings.protocols,
        windows: settings.windows,
        buffers: settings.buffers,
        max_queued_streams: settings.max_queued_streams,
        book: Some(settings.book),
        liveness: settings.liveness,
        route: match settings.route {
            Route::Relayed => Route::Relayed,
            _ => settings.punch.route_for(&remote_peer_id),
        },
    };
    let session = Session::new(est, false, None);
    watch_handshake(&session, handshake);
    let exchange = crate::session::listener_exchange(&session, identity, ours, early);
    let result = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Handshake("no hello in time".into())),
    };
    if let Err(e) = &result {
        crate::closing::close(
            &conn,
            VarInt::from_u32(close_code_for(e)),
            e.to_string().as_bytes(),
        );
    }
    result.map(|()| with_coordinated_route(session))
}

/// A coordinated dial's session takes the route its dialer names: the pending-punch table
/// alone can be wrong when the asker's dial completes after the introduction ended, or a
/// reversal dial after the asker moved on to punching (see [`crate::session::route`]).
fn with_coordinated_route(session: Session) -> Session {
    if session.route() == Route::Relayed {
        return session;
    }
    let hint = session
        .remote_capabilities()
        .into_iter()
        .find(|(k, _)| k == COORDINATED)
        .and_then(|(_, v)| Route::from_hint(&v));
    if let Some(route) = hint {
        session.set_route(route);
    }
    session
}

/// Whether a connection taken in 0.5-RTT resumed an earlier session. rustls sets the peer's
/// certificate from the ticket when it resumes; on a full handshake it only comes with the
/// client's Finished, which on a fast path may already be in: a resumption also took one of
/// our tickets (`taken`, when the per-connection config could record it).
fn resumes(conn: &quinn::Connection, taken: Option<&std::sync::atomic::AtomicBool>) -> bool {
    taken.is_none_or(|t| t.load(std::sync::atomic::Ordering::Acquire))
        && conn.peer_identity().is_some()
}

/// Marks the session's TLS handshake done: now, or for a connection taken in 0.5-RTT, once
/// `accepted` resolves (on this side its value says nothing) and the connection still stands.
fn watch_handshake(session: &Session, accepted: Option<quinn::ZeroRttAccepted>) {
    match accepted {
        Some(accepted) => {
            session.set_resumed(true);
            let early = session.clone();
            tokio::spawn(async move {
                accepted.await;
                if early.inner_conn().close_reason().is_none() {
                    early.mark_handshake_done(true);
                }
            });
        }
        None => session.mark_handshake_done(false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Node, NodeConfig};
    use crate::session::{Route, Session, COORDINATED};
    use i6p_core::Identity;

    fn node(capabilities: Vec<(String, String)>) -> Node {
        let config = NodeConfig {
            dial_back: false,
            capabilities,
            ..NodeConfig::default()
        };
        Node::bind(Identity::generate(), "[::1]:0".parse().unwrap(), config).unwrap()
    }

    /// `a` dials `b` as a coordinated attempt on `route` (None: a plain dial).
    async fn dial(a: &Node, b: &Node, route: Option<Route>) -> (Session, Session) {
        let addr = b.local_addr().unwrap();
        let (ours, theirs) =
            tokio::join!(a.dial_session(b.peer_id(), addr, false, route), b.accept());
        (ours.unwrap(), theirs.unwrap())
    }

    #[tokio::test]
    async fn the_listener_labels_a_coordinated_session_as_its_dialer_does() {
        let (a, b) = (node(Vec::new()), node(Vec::new()));
        // No introduction pending at the listener: it ended before the dial came in.
        let (ab, ba) = dial(&a, &b, Some(Route::Punched)).await;
        assert_eq!((ab.route(), ba.route()), (Route::Punched, Route::Punched));
        // A reversal dial that completes after the listener moved on to punching.
        let _guard = b
            .inner
            .punch
            .expect(a.peer_id(), Route::Punched, None)
            .unwrap();
        let (ab, ba) = dial(&a, &b, Some(Route::Direct)).await;
        assert_eq!((ab.route(), ba.route()), (Route::Direct, Route::Direct));
    }

    #[tokio::test]
    async fn an_application_cannot_set_the_reserved_capability() {
        let forged = vec![(COORDINATED.to_string(), "punched".to_string())];
        let (a, b) = (node(forged), node(Vec::new()));
        let (ab, ba) = dial(&a, &b, None).await;
        assert_eq!((ab.route(), ba.route()), (Route::Direct, Route::Direct));
        assert!(ba
            .remote_capabilities()
            .iter()
            .all(|(k, _)| k != COORDINATED));
    }
}
