//! Forward error correction over datagrams: how a blob is cut into stripes of k data + m
//! parity shards, and the SHARD datagram that carries one shard.
//!
//! This is the wire layer of FEC mode; `fec_serve` and `fetch::fec` in the net crate send and
//! receive it. A blob of `size` bytes is cut into stripes of `k × shard_len` bytes (the last one
//! shorter, zero-padded to whole shards); each stripe is coded into `k + m` shards of
//! `shard_len` bytes, any k of which rebuild it. A shard travels alone in one QUIC datagram,
//! so `shard_len` plus the header must fit the path's datagram size.
//!
//! ```text
//! shard = 0x01  transfer:u32  stripe:u64  index:u8  k:u8  m:u8  payload:shard_len bytes
//! ```
//!
//! `transfer` names the fetch (the requester picks it); `k` and `m` are the stripe's shape,
//! which the sender may change between stripes as redundancy adapts: the receiver reports the
//! shards it got and lost ([`LossReport`]), and [`Redundancy`] picks the smallest m that makes
//! losing a stripe (more than m of its k + m shards) rarer than a target probability.
//!
//! Beside the codecs live the machines of FEC mode, which do no I/O and read no clock (the
//! time is passed in): the requester's stripe assembler, the provider's send schedule and
//! its flow window.

mod loss;
mod request;
mod shard;

pub use loss::{stripe_loss, LossEstimate, Redundancy, SPIKE_WINDOW};
pub use request::*;
pub use shard::*;
mod flow;
mod schedule;
pub use flow::{FlowWindow, INITIAL_FLOW, MAX_FLOW, MIN_FLOW_STRIPES, TICK};
pub use schedule::{stripe_runs, SendSchedule, Transmit, REPAIR_QUEUE};
mod assembler;
mod tally;
pub use assembler::{
    Action, Assembler, BatchShape, Failure, MemberFate, MemberSpec, ReadyGroup, Source, Totals,
    LAG, MAX_MEMBERS,
};
pub use tally::{apportion, shares};
