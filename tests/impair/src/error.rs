//! The crate's one error type.

/// Why the relay or the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line could not be understood.
    #[error("{0}")]
    Usage(String),
    /// A socket, poll or thread operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A worker thread panicked.
    #[error("a worker thread panicked")]
    Panicked,
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
