//! The error type of the core crate.

use thiserror::Error;

/// Result alias for the core crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Everything that can go wrong while decoding or checking protocol data or keys.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A peer id string is not 64 lowercase or uppercase hex characters.
    #[error("invalid peer id: {0}")]
    InvalidPeerId(String),
    /// A key could not be parsed or is not an Ed25519 key.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A frame announced a payload longer than the protocol allows.
    #[error("frame too large: {len} bytes (limit {limit})")]
    FrameTooLarge {
        /// The announced payload length.
        len: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// A message ended before all its fields were read.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A message has a field with a value the protocol does not allow.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A signature did not verify against the expected key and channel binding.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// Data did not hash to what its BLAKE3 tree says (a corrupt, forged or changed source).
    #[error("hash mismatch on {0}")]
    HashMismatch(&'static str),
    /// The peer speaks a protocol version this implementation does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// Erasure-coding parameters outside what GF(2^8) Reed-Solomon allows.
    #[error(
        "invalid erasure parameters: {data} data + {parity} parity shards \
         (need at least 1 of each, at most 256 in all)"
    )]
    InvalidErasureParams {
        /// The data shard count asked for.
        data: usize,
        /// The parity shard count asked for.
        parity: usize,
    },
    /// Fewer shards are present than a stripe needs to be rebuilt.
    #[error("too few shards: {present} present, {needed} needed")]
    TooFewShards {
        /// Shards present.
        present: usize,
        /// Shards needed (the data shard count).
        needed: usize,
    },
    /// A stripe was given the wrong number of shards.
    #[error("wrong shard count: {got}, expected {expected}")]
    ShardCount {
        /// Shards given.
        got: usize,
        /// Data plus parity shards of the stripe.
        expected: usize,
    },
    /// A shard's length differs from the stripe's shard length.
    #[error("shard {index} has {len} bytes, expected {expected}")]
    ShardSize {
        /// Position of the shard in the stripe.
        index: usize,
        /// Its length.
        len: usize,
        /// The stripe's shard length.
        expected: usize,
    },
    /// A signed record that decodes but is outside its validity window: expired, or issued
    /// further in the future than clocks disagree.
    #[error("{what} not valid now: {detail}")]
    OutOfDate {
        /// Which record.
        what: &'static str,
        /// Issue time, validity and the time it was checked at.
        detail: String,
    },
    /// This CPU lacks instructions the Reed-Solomon kernels were compiled to use.
    #[error("unsupported CPU: {0}")]
    UnsupportedCpu(String),
    /// The size asked back from a stripe exceeds the data it holds.
    #[error("size {size} exceeds the stripe's {capacity} data bytes")]
    StripeSize {
        /// The size asked for.
        size: u64,
        /// Data shards times shard length.
        capacity: u64,
    },
}
