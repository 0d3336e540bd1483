//! How a session's packets travel between the two peers.
//!
//! A session keeps the route its connection was made on: a dial to a known address, a
//! coordinated simultaneous open through a mutual peer, or a circuit through a relay. Both
//! peers must agree on it, since it decides which of two competing sessions stays (see
//! `node::primary`): a relay's circuit is known to both; for a coordinated dial the dialer
//! names the attempt in its HELLO ([`COORDINATED`]) and the listener takes its word, since
//! only the dialer knows which of its attempts made the connection.

/// The HELLO capability a coordinated dial carries: the route of the attempt that made it,
/// "direct" (connection reversal) or "punched" (simultaneous open). Reserved: a node drops
/// it from the capabilities its application configures.
pub const COORDINATED: &str = "coordinated";

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

    /// The route a dialer names in its HELLO's [`COORDINATED`] capability; a relayed
    /// route is never taken from a peer's word.
    pub fn from_hint(hint: &str) -> Option<Self> {
        match hint {
            "direct" => Some(Self::Direct),
            "punched" => Some(Self::Punched),
            _ => None,
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

    #[test]
    fn a_hint_names_a_direct_path_only() {
        for r in [Route::Direct, Route::Punched] {
            assert_eq!(Route::from_hint(r.as_str()), Some(r));
        }
        assert_eq!(Route::from_hint("relayed"), None);
        assert_eq!(Route::from_hint(""), None);
    }
}
