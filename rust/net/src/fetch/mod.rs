//! The requester side of blob transfers: verified, resumable fetching into a file, from one
//! provider or several at once.
//!
//! Three stages, so that the network, hashing and the disk do not wait for each other:
//! - provider workers ([`worker`]: async tasks, `streams` of them per provider), each with a
//!   GET in flight on a stream of its own, read every group's proof and data straight into a
//!   pooled buffer;
//! - the disk stage ([`disk`]: one blocking thread) verifies each group against the blob's
//!   root, writes it, and records it in the state file (after an fsync) every
//!   `save_interval`, so progress reported is progress that survives a crash;
//! - rounds ([`round`]): groups that failed verification stay missing and are asked for
//!   again, until `max_failures`, when their provider is dropped with an integrity error.
//!
//! Who fetches what, take-over from a slow provider, stalls and give-up are decided by the
//! scheduler, [`i6p_core::schedule::Schedule`], a machine without I/O that this module only
//! drives ([`shared`] holds it under a lock). [`ticket`] dials providers and reconnects;
//! [`range`] reads a few groups into memory.
//!
//! Buffers go back to a pool once written: in steady state nothing is allocated per group.

mod disk;
pub mod fec;
mod options;
mod queue;
mod range;
mod round;
mod shared;
mod ticket;
mod worker;

pub use fec::FecOptions;
pub use options::{FecStats, FetchOptions, FetchOutcome, Progress, ProviderOutcome, Reconnect};
pub use range::fetch_range;
pub use round::{fetch_from, fetch_to_file};
pub use ticket::{fetch_ticket, fetch_tickets, MAX_DIAL_ADDRS_PER_FETCH};

pub(crate) use queue::DiskSender;
pub(crate) use shared::{BatchProgress, Claim, Shared, MIXED};
pub(crate) use worker::{no_stall, plain_request, read_answer_raw, worker};
