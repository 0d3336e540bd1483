//! Protocol handlers: every stream the peer opens starts with a kind byte (see
//! [`i6p_core::kinds`]), and the session hands the stream to the handler the node registered
//! for that kind — the application's streams, blob transfers, and whatever protocol comes
//! next — so the session itself knows no protocol.
//!
//! Invariants: a stream whose kind has no handler is reset and stopped with
//! [`codes::UNKNOWN_STREAM_KIND`]; a kind has at most one handler, and a handler once
//! registered stays (sessions may be serving with it). Per-session state of a protocol lives
//! in the session's extension slots, one value per type, created on first use; the datagrams
//! of the connection go to the one protocol that claims them, and are dropped until then.

use super::order::Turn;
use super::stream::{RecvStream, SendStream};
use super::Session;
use crate::error::{NetError, Result};
use i6p_core::codes;
use i6p_core::kinds::STREAM_APP;
use quinn::VarInt;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How long a peer may take to send the kind byte of a stream it opened.
const STREAM_KIND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a protocol handler returns: the serving of one stream.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A protocol served on the streams of one kind.
///
/// `handle` gets each stream the peer opened with the handler's kind byte (already read), as
/// soon as it arrives: possibly before the TLS handshake is complete (0-RTT), so a handler
/// that is not replay-safe waits for [`Session::wait_established`] first. Any
/// `Fn(Session, SendStream, RecvStream) -> impl Future` is a handler.
pub trait ProtocolHandler: Send + Sync + 'static {
    /// Serves one stream; the future runs on its own task.
    fn handle(&self, session: Session, send: SendStream, recv: RecvStream) -> HandlerFuture;
}

impl<F, Fut> ProtocolHandler for F
where
    F: Fn(Session, SendStream, RecvStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&self, session: Session, send: SendStream, recv: RecvStream) -> HandlerFuture {
        Box::pin(self(session, send, recv))
    }
}

/// The protocols a node serves, by stream kind. Shared by the node and its sessions, so a
/// handler registered later serves sessions that already exist.
pub struct Protocols {
    handlers: RwLock<HashMap<u8, Arc<dyn ProtocolHandler>>>,
}

impl std::fmt::Debug for Protocols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<u8> = self
            .handlers
            .read()
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("Protocols").field("kinds", &kinds).finish()
    }
}

impl Default for Protocols {
    /// Only the application's streams (kind [`STREAM_APP`]), handed to `accept_stream`.
    fn default() -> Self {
        let protocols = Self {
            handlers: RwLock::default(),
        };
        let app: Arc<dyn ProtocolHandler> = Arc::new(ApplicationStreams);
        if let Ok(mut h) = protocols.handlers.write() {
            h.insert(STREAM_APP, app);
        }
        protocols
    }
}

impl Protocols {
    /// Serves streams of `kind` with `handler`. Fails if the kind already has a handler.
    pub fn register(&self, kind: u8, handler: Arc<dyn ProtocolHandler>) -> Result<()> {
        let mut handlers = self
            .handlers
            .write()
            .map_err(|_| NetError::Config("protocol registry lock poisoned".into()))?;
        if handlers.contains_key(&kind) {
            return Err(NetError::Config(format!(
                "stream kind {kind:#04x} already has a handler"
            )));
        }
        handlers.insert(kind, handler);
        Ok(())
    }

    /// The stream kinds that have a handler.
    pub fn kinds(&self) -> Vec<u8> {
        let mut kinds: Vec<u8> = self
            .handlers
            .read()
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        kinds.sort_unstable();
        kinds
    }

    fn handler(&self, kind: u8) -> Option<Arc<dyn ProtocolHandler>> {
        self.handlers.read().ok()?.get(&kind).cloned()
    }
}

/// Holds the application's kind in the registry, so no protocol can take it over. Its
/// streams never reach a handler: the dispatcher queues them for `accept_stream` itself, in
/// the order the peer opened them.
struct ApplicationStreams;

impl ProtocolHandler for ApplicationStreams {
    fn handle(&self, _: Session, _: SendStream, _: RecvStream) -> HandlerFuture {
        Box::pin(async {})
    }
}

/// Per-session values of protocols, one per type.
#[derive(Default)]
pub(crate) struct Extensions(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Session {
    /// The session's value of type `T`, made by `init` on first use.
    pub(crate) fn extension<T: Any + Send + Sync>(
        &self,
        init: impl FnOnce(&quinn::Connection) -> Arc<T>,
    ) -> Arc<T> {
        let mut map = self
            .inner
            .extensions
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Keyed by the type, so the downcast always succeeds.
        if let Some(Ok(value)) = map
            .get(&TypeId::of::<T>())
            .map(|v| v.clone().downcast::<T>())
        {
            return value;
        }
        let value = init(&self.inner.conn);
        map.insert(TypeId::of::<T>(), value.clone());
        value
    }

    /// The state of the one protocol that reads the connection's datagrams (made by `start`
    /// on first use); from then on the session no longer drops them (see
    /// [`Self::drain_datagrams`]).
    pub(crate) fn datagram_consumer<T: Any + Send + Sync>(
        &self,
        start: impl FnOnce(&quinn::Connection) -> Arc<T>,
    ) -> Arc<T> {
        self.extension(|conn| {
            self.inner.datagrams_claimed.send_replace(true);
            start(conn)
        })
    }

    /// Reads and drops the connection's datagrams until a protocol claims them, so a peer
    /// cannot pin the connection's datagram buffer on a node that reads none. (A datagram in
    /// hand when the claim comes is dropped: datagrams are unreliable, and none is expected
    /// before the protocol that claims them has asked for any.)
    pub(super) fn drain_datagrams(&self) {
        let conn = self.inner.conn.clone();
        let mut claimed = self.inner.datagrams_claimed.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = claimed.wait_for(|c| *c) => return,
                    read = conn.read_datagram() => if read.is_err() { return },
                }
            }
        });
    }

    /// Opens a stream of a registered protocol: writes `kind` as its first byte, so the
    /// peer's handler for that kind gets it.
    pub async fn open_protocol_stream(&self, kind: u8) -> Result<(SendStream, RecvStream)> {
        let (send, recv) = self.open_kind(Some(kind)).await?;
        Ok(self.wrap(send, recv))
    }
}

/// Accepts every stream the peer opens, reads its kind byte, and hands the stream to the
/// handler registered for that kind, on a task of its own. Application streams are queued
/// for `accept_stream` in the order the peer opened them ([`super::order`]).
pub(crate) async fn dispatch_streams(session: Session) {
    for seq in 0u64.. {
        let (send, mut recv) = match session.inner.conn.accept_bi().await {
            Ok(pair) => pair,
            Err(_) => return,
        };
        let session = session.clone();
        let turn = Turn::new(session.clone(), seq);
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            match tokio::time::timeout(STREAM_KIND_TIMEOUT, recv.read_exact(&mut kind)).await {
                Ok(Ok(())) => {}
                // The peer gave up, or never said what the stream is: drop it.
                _ => return,
            }
            if kind[0] == STREAM_APP {
                // Application data may be a replay until the handshake completes, so it is
                // not delivered before the session is established.
                if session.wait_established().await.is_ok() {
                    turn.settle(Some((send, recv)));
                }
                return;
            }
            drop(turn);
            match session.inner.protocols.handler(kind[0]) {
                Some(handler) => {
                    let (send, recv) = session.wrap(send, recv);
                    handler.handle(session, send, recv).await;
                }
                None => {
                    let (mut send, mut recv) = (send, recv);
                    let _ = send.reset(VarInt::from_u32(codes::UNKNOWN_STREAM_KIND));
                    let _ = recv.stop(VarInt::from_u32(codes::UNKNOWN_STREAM_KIND));
                }
            }
        });
    }
}
