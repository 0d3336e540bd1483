//! How a session's packets travel between the two peers.
//!
//! A session keeps the route its connection was made on: a dial to a known address, a
//! coordinated simultaneous open through a mutual peer, or a circuit through a relay. Both
//! peers compute it the same way, so "direct beats relayed" needs no extra message.

/// The path a session's connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// Through a relay: the relay sees PeerIds and ciphertext only.
    Relayed = 0,
    /// A direct path opened by a coordinated simultaneous open (hole punching).
    Punched = 1,
    /// A direct path to an address the dialer already knew (or connection reversal).
    Direct = 2,
}

impl Route {
    /// The name the Python API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Punched => "punched",
            Self::Relayed => "relayed",
        }
    }

    /// Whether packets flow between the peers without a third node in between.
    pub fn is_direct(self) -> bool {
        self != Self::Relayed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_paths_rank_above_relayed() {
        assert!(Route::Direct > Route::Relayed && Route::Punched > Route::Relayed);
        for r in [Route::Direct, Route::Punched, Route::Relayed] {
            assert_eq!(r.is_direct(), r != Route::Relayed);
        }
        assert_eq!(Route::Punched.as_str(), "punched");
    }
}
