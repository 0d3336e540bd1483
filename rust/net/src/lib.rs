//! I6P networking: QUIC endpoint, TLS identity binding and symmetric sessions.
//!
//! A [`Node`] owns one UDP socket and one identity. `connect` dials a peer by PeerId and
//! address; the TLS handshake fails unless the peer's certificate key hashes to that PeerId.
//! Both sides then exchange signed HELLOs on the control stream before a [`Session`] is
//! handed to the application.
//!
//! Every other stream starts with a kind byte, and the session hands it to the protocol
//! handler the node registered for that kind ([`Protocols`]): the application's streams and
//! blob transfers out of the box, more with [`Node::register_protocol`]. The files a node
//! reads and writes are handled in [`storage`].

#![deny(missing_docs)]

pub mod addr;
pub mod bench;
pub mod blobs;
pub mod closing;
pub mod congestion;
pub mod control;
pub mod dial;
mod dialback;
pub mod discovery;
pub mod error;
mod exporter;
mod fec_serve;
mod fec_session;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod mtu;
pub mod node;
mod probe;
mod protocols;
pub mod reach;
pub mod relay;
mod resume;
mod route_mtu;
pub mod session;
pub use session::stream;
pub mod socket;
pub mod splice;
pub mod storage;
mod tls;
pub mod transport;

pub use error::{NetError, Result};
pub use limits::Limits;
pub use node::{CoordinatorLie, Node, NodeConfig, MAX_PENDING_PUNCHES};
pub use session::{ProtocolHandler, Protocols, Session, SessionStats};
pub use stream::{RecvStream, SendStream};
pub use tls::peer_of_certificate;
