//! The protocols a node serves out of the box, registered on its [`Protocols`]: blob
//! transfers on stream kind [`STREAM_BLOBS`] (a plain GET served by [`crate::blobs`], a FEC
//! GET by the FEC provider).
//!
//! The session knows none of the transfer code; this module, which the node uses to set
//! itself up, is where the two meet.

use crate::blobs::{self, BlobStore};
use crate::session::stream::{RecvStream, SendStream};
use crate::session::{HandlerFuture, ProtocolHandler, Protocols, Session};
use crate::Result;
use i6p_core::kinds::STREAM_BLOBS;
use std::sync::Arc;

/// Registers blob transfers (plain and FEC) on `protocols`, served from `store`.
pub(crate) fn register_blobs(protocols: &Protocols, store: Arc<BlobStore>) -> Result<()> {
    protocols.register(STREAM_BLOBS, Arc::new(BlobTransfers { store }))
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
