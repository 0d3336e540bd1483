//! The application's hold on a session: every object the application keeps (the session
//! itself, its streams) holds an [`AppHandle`], and when the last one goes the session is
//! closed with [`codes::ABANDONED`], so a session the application forgot never stays open.
//! Transfers riding on an application session (fetches reuse it) hold a [`TransferHold`]:
//! when the application lets go while one runs, the close waits for the last transfer, so
//! the fetch is not cut and made to dial again. Sessions the application never held (a
//! serve-only node's, a fetch's own) are not counted and live as before.

use super::Session;
use i6p_core::codes;
use std::sync::{Arc, Mutex};

/// Who holds a session; kept in the session's extension slots.
#[derive(Default)]
struct Holders(Mutex<Counts>);

#[derive(Default)]
struct Counts {
    app: usize,
    transfers: usize,
    /// The application let go while transfers ran: close when the last one ends.
    abandoned: bool,
}

impl Holders {
    /// Applies `change`; true when the session is now to be closed as abandoned.
    fn update(&self, change: impl FnOnce(&mut Counts)) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let had_app = counts.app > 0;
        change(&mut counts);
        if had_app && counts.app == 0 {
            counts.abandoned = true;
        }
        counts.abandoned && counts.app == 0 && counts.transfers == 0
    }
}

/// One application hold on a session; dropping the last one closes it.
pub struct AppHandle {
    session: Session,
    holders: Arc<Holders>,
}

/// A transfer riding on a session; while one is held, the application dropping the session
/// does not close it yet.
pub struct TransferHold {
    session: Session,
    holders: Arc<Holders>,
}

impl Session {
    fn holders(&self) -> Arc<Holders> {
        self.extension(|_| Arc::new(Holders::default()))
    }

    /// A new application hold on this session.
    pub fn app_handle(&self) -> AppHandle {
        let holders = self.holders();
        holders.update(|c| {
            c.app += 1;
            c.abandoned = false;
        });
        AppHandle {
            session: self.clone(),
            holders,
        }
    }

    /// Whether the application holds this session now.
    pub(crate) fn app_held(&self) -> bool {
        self.holders().0.lock().map(|c| c.app > 0).unwrap_or(false)
    }

    /// A transfer's hold on this session.
    pub(crate) fn transfer_hold(&self) -> TransferHold {
        let holders = self.holders();
        holders.update(|c| c.transfers += 1);
        TransferHold {
            session: self.clone(),
            holders,
        }
    }

    /// Closes the session the application abandoned. Synchronous (CONNECTION_CLOSE only, no
    /// CLOSE frame): a drop may happen on a thread without a runtime. A session already
    /// closed keeps its first reason.
    fn close_abandoned(&self) {
        self.refuse(codes::ABANDONED, "the application dropped the session");
    }
}

impl Drop for AppHandle {
    fn drop(&mut self) {
        if self.holders.update(|c| c.app = c.app.saturating_sub(1)) {
            self.session.close_abandoned();
        }
    }
}

impl Drop for TransferHold {
    fn drop(&mut self) {
        if self
            .holders
            .update(|c| c.transfers = c.transfers.saturating_sub(1))
        {
            self.session.close_abandoned();
        }
    }
}
