//! I6P networking: QUIC endpoint, TLS identity binding and symmetric sessions.
//!
//! A [`Node`] owns one UDP socket and one identity. `connect` dials a peer by PeerId and
//! address; the TLS handshake fails unless the peer's certificate key hashes to that PeerId.
//! Both sides then exchange signed HELLOs on the control stream before a [`Session`] is
//! handed to the application.

#![deny(missing_docs)]

pub mod addr;
pub mod bench;
pub mod blobs;
pub mod control;
pub mod dial;
pub mod error;
pub mod fec_fetch;
mod fec_serve;
mod fec_session;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod node;
mod protocols;
mod resume;
pub mod session;
pub use session::stream;
pub mod socket;
pub mod storage;
mod tls;
pub mod transport;

pub use error::{NetError, Result};
pub use limits::Limits;
pub use node::{Node, NodeConfig};
pub use session::{ProtocolHandler, Protocols, Session, SessionStats};
pub use stream::{RecvStream, SendStream};
pub use tls::peer_of_certificate;
