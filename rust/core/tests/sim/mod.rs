//! A deterministic network for simulation tests of the protocol machines.
//!
//! Time is simulated: a test takes one `Instant` as its origin and advances `now` itself to the
//! next event (a machine's timeout or a link's next arrival), so a transfer of many round trips
//! runs in milliseconds and the same seed gives the same run. Test-only: the engine's machines
//! never read a clock, so nothing here needs to reach into them.

#![allow(dead_code, unused_imports)]

pub mod link;

pub use link::{Burst, Link, LinkConfig, LinkStats, Rng};
