//! The application's hold on a session: every object the application keeps (the session
//! itself, its streams) holds an [`AppHandle`], and when the last one goes the session is
//! closed with [`codes::ABANDONED`], so a session the application forgot never stays open.
//! Sessions the application never held (a serve-only node's, a fetch's own) are not counted
//! and live as before.

use super::Session;
use i6p_core::codes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many application handles a session has; kept in the session's extension slots.
#[derive(Default)]
struct Holders(AtomicUsize);

/// One application hold on a session; dropping the last one closes it.
pub struct AppHandle {
    session: Session,
    holders: Arc<Holders>,
}

impl Session {
    /// A new application hold on this session.
    pub fn app_handle(&self) -> AppHandle {
        let holders = self.extension(|_| Arc::new(Holders::default()));
        holders.0.fetch_add(1, Ordering::AcqRel);
        AppHandle {
            session: self.clone(),
            holders,
        }
    }
}

impl Drop for AppHandle {
    fn drop(&mut self) {
        if self.holders.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Synchronous (CONNECTION_CLOSE only, no CLOSE frame): a drop may happen on a
            // thread without a runtime. A session already closed keeps its first reason.
            self.session
                .refuse(codes::ABANDONED, "the application dropped the session");
        }
    }
}
