//! I6P engine core: the parts of the protocol that do no I/O.
//!
//! Everything here is deterministic and synchronous, so it can be unit-tested, fuzzed and
//! benchmarked without sockets or Python: peer identity (Ed25519 keys, [`PeerId`]), the control
//! frame codec and the messages carried on the control stream (HELLO, PEER_INFO, PING/PONG,
//! CLOSE), the registry of every kind and code on the wire ([`kinds`], [`codes`]), the verified
//! BLAKE3 tree, Reed-Solomon erasure coding and the resumable state format. Every decoder
//! checks lengths against their bounds before allocating.
//!
//! It also holds the protocol machines, which the `net` crate drives: the fetch scheduler
//! ([`schedule`]), and FEC mode's stripe assembler, send schedule and flow window ([`fec`]).
//! A machine is told what happened, with the time passed in (`handle_*`), and says what to do
//! next (`poll_*`); it never touches a socket, a file or a clock, so `tests/` runs several
//! simulated peers over seeded, impaired links in simulated time.

#![deny(missing_docs)]

pub mod codes;
pub mod collection;
pub mod contact;
pub mod coord;
pub mod dht_record;
pub mod dialback;
pub mod erasure;
pub mod error;
pub mod fec;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod hello;
pub mod identity;
pub mod kinds;
pub mod messages;
pub mod partial;
pub mod peer_id;
pub mod punch;
pub mod reflect;
pub mod relay;
pub mod schedule;
pub mod ticket;
pub mod transfer;
pub mod tree;
mod wire;

pub use erasure::{Coder, ErasureParams, Stripe};
pub use error::{CoreError, Result};
pub use frame::{FrameHeader, FrameType, FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD};
pub use hello::{Hello, Role, PROTOCOL_VERSION};
pub use hello::{EXPORTER_LABEL, EXPORTER_LEN};
pub use identity::{Identity, PublicKey};
pub use messages::{Close, PeerInfo, Ping};
pub use peer_id::PeerId;

/// The ALPN protocol id negotiated in the TLS handshake; it names the wire protocol version.
pub const ALPN: &[u8] = b"i6p/1";
