//! FEC's per-session state, kept in the session's extension slots: the datagram router that
//! hands SHARD datagrams to the requests they belong to (the session's datagram consumer),
//! and the flow window the last request served on the session reached.
//!
//! Nothing imports this module: its methods are found on [`Session`] by the FEC requester and
//! provider, so the session and the node set-up stay free of FEC code.

use crate::fetch::fec::Router;
use crate::session::Session;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

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
    /// The session's datagram router (FEC shards to their requests), started on first use;
    /// from then on it reads all of the connection's datagrams.
    pub(crate) fn datagram_router(&self) -> Arc<Router> {
        self.datagram_consumer(|conn| Router::start(conn.clone()))
    }

    /// The FEC window to start a served request with (0: none reached yet).
    pub(crate) fn fec_window(&self) -> Arc<FecWindow> {
        self.extension(|_| Arc::new(FecWindow::default()))
    }
}
