//! Finding a peer's addresses from its identity alone, asked in this order by
//! `Node::connect_by_id`: the address book (this node's own memory of where peers were seen),
//! then mDNS on the LAN, then the Mainline DHT (records signed by the peer's key).

pub mod book;
pub mod dht;
pub mod mdns;

pub use book::AddressBook;
pub use dht::{Dht, Resolved};
pub use mdns::Mdns;
