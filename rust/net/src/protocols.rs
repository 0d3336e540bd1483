//! The protocols a node serves out of the box, registered on its [`Protocols`]: blob
//! transfers on stream kind [`STREAM_BLOBS`] (a plain GET served by [`crate::blobs`], a FEC
//! GET by the FEC provider), and the per-session state of FEC (the datagram router that hands
//! SHARD datagrams to requests, and the flow window reached by served requests).
//!
//! This is the one module that knows both the session and the transfer code; the session
//! knows none of it.

use crate::blobs::{self, BlobStore};
use crate::fec_fetch::Router;
use crate::session::stream::{RecvStream, SendStream};
use crate::session::{HandlerFuture, ProtocolHandler, Protocols, Session};
use crate::Result;
use i6p_core::kinds::STREAM_BLOBS;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Registers blob transfers (plain and FEC) on `protocols`, served from `store`.
pub(crate) fn register_blobs(protocols: &Protocols, store: Arc<BlobStore>) -> Result<()> {
    protocols.register(STREAM_BLOBS, Arc::new(BlobTransfers { store }))?;
    // Datagrams are read (and dropped unless a FEC fetch wants them) from the start, so a
    // peer cannot pin the connection's datagram buffer on a node that runs none.
    protocols.on_session(|session| {
        session.datagram_router();
    });
    Ok(())
}

/// The provider side of stream kind BLOBS.
struct BlobTransfers {
    store: Arc<BlobStore>,
}

impl ProtocolHandler for BlobTransfers {
    fn handle(&self, session: Session, send: SendStream, recv: RecvStream) -> HandlerFuture {
        let store = self.store.clone();
        let (mut send, mut recv) = (send.into_inner(), recv.into_inner());
        Box::pin(async move {
            let Some(request) = blobs::accept(&store, &session, &mut send, &mut recv).await else {
                return;
            };
            // The slot is held until the request is served.
            let blobs::Accepted {
                get,
                fec,
                blob,
                slot: _slot,
            } = request;
            match fec {
                Some(fec) => {
                    crate::fec_serve::serve_fec(store, session, blob, fec, send, recv).await;
                }
                None => {
                    let peer = session.remote_peer_id();
                    blobs::serve_get(&store, peer, &get, blob, send).await;
                }
            }
        })
    }
}

/// The largest FEC window (bytes) a request served on a session reached: the next one
/// starts there instead of from the beginning.
#[derive(Default)]
pub(crate) struct FecWindow(AtomicU64);

impl Deref for FecWindow {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

impl Session {
    /// The session's datagram router (FEC shards to their requests), started on first use.
    pub(crate) fn datagram_router(&self) -> Arc<Router> {
        self.extension(|conn| Router::start(conn.clone()))
    }

    /// The FEC window to start a served request with (0: none reached yet).
    pub(crate) fn fec_window(&self) -> Arc<FecWindow> {
        self.extension(|_| Arc::new(FecWindow::default()))
    }
}
