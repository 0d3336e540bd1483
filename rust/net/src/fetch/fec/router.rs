//! Hands each SHARD datagram of a session to the FEC request its transfer number names.

use bytes::Bytes;
use i6p_core::fec::SHARD_TAG;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A datagram and the member of its batch it came from.
pub(crate) type Tagged = (usize, Bytes);

/// Hands each SHARD datagram of a session to the request it belongs to.
pub(crate) struct Router {
    routes: Mutex<HashMap<u32, (mpsc::Sender<Tagged>, usize)>>,
    next: AtomicU32,
}

impl Router {
    /// Starts routing `conn`'s datagrams until it closes.
    pub(crate) fn start(conn: quinn::Connection) -> Arc<Self> {
        let router = Arc::new(Self {
            routes: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
        });
        let weak = Arc::downgrade(&router);
        tokio::spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                let Some(router) = weak.upgrade() else {
                    return;
                };
                if datagram.len() < 5 || datagram[0] != SHARD_TAG {
                    continue;
                }
                let transfer =
                    u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
                let route = router
                    .routes
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&transfer).cloned());
                // A shard of a finished request, or one its request cannot keep up with: lost.
                if let Some((route, member)) = route {
                    let _ = route.try_send((member, datagram));
                }
            }
        });
        router
    }

    /// A transfer number whose datagrams go to `tx`, tagged with `member`.
    pub(super) fn register(self: &Arc<Self>, tx: mpsc::Sender<Tagged>, member: usize) -> Route {
        let transfer = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(transfer, (tx, member));
        }
        Route {
            router: self.clone(),
            transfer,
        }
    }
}

/// A registered transfer number; unregistered when dropped.
pub(super) struct Route {
    router: Arc<Router>,
    pub(super) transfer: u32,
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.router.routes.lock() {
            routes.remove(&self.transfer);
        }
    }
}
