//! Who hears of the peer's PEER_INFO. The node's reflections (the `reach` module) register an
//! observer on each of its sessions; the control task calls it with every address the peer
//! says it observes for us. The session knows nothing of what the observer does with it.
//!
//! The observer may be registered after the PEER_INFO came: registering calls it with the
//! address already received. Both paths take the lock of that address, so the observer is
//! never missed (it may hear one address twice).

use super::Session;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// Called with the session and the address its peer observes for us.
pub(crate) type PeerInfoObserver = Arc<dyn Fn(&Session, SocketAddr) + Send + Sync>;

#[derive(Default)]
struct Slot(OnceLock<PeerInfoObserver>);

impl Session {
    /// Calls `observer` with every PEER_INFO from now on, and with the one already received.
    /// A session has one observer; a second registration is ignored.
    pub(crate) fn observe_peer_info(&self, observer: PeerInfoObserver) {
        let slot = self.extension(|_| Arc::new(Slot::default()));
        if slot.0.set(observer.clone()).is_ok() {
            if let Some(addr) = self.observed_addr() {
                observer(self, addr);
            }
        }
    }

    /// The control task read a PEER_INFO (already recorded as `observed_addr`).
    pub(super) fn peer_info_observed(&self, addr: SocketAddr) {
        let slot = self.extension(|_| Arc::new(Slot::default()));
        if let Some(observer) = slot.0.get() {
            observer(self, addr);
        }
    }
}
