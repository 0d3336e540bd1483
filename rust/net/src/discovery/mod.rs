//! Finding a peer's addresses from its identity alone: the address book (this node's own
//! memory of where peers were seen), asked first by `Node::connect_by_id`.

pub mod book;

pub use book::AddressBook;
