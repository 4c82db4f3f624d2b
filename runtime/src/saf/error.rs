//! Errors of the store-and-forward engine.
//!
//! Every failure reaches the caller as a [`SafError`] with a message that names what went
//! wrong and what to do; the engine never panics on bad input or I/O errors.

use std::path::PathBuf;

/// What can go wrong in the store-and-forward engine.
#[derive(Debug, thiserror::Error)]
pub enum SafError {
    /// The caller gave something the engine cannot store (bad id, target, payload, filter).
    #[error("invalid store-and-forward input: {0}")]
    InvalidInput(String),
    /// A payload above the configured limit.
    #[error("payload of {size} bytes exceeds the store-and-forward limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The disk (or the user's quota) is full: the batch was not written, nothing is lost.
    #[error(
        "store-and-forward buffer at {path}: the disk is full; the message was NOT buffered \
         (free disk space and retry)"
    )]
    DiskFull {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory is already open in this process.
    #[error("store-and-forward buffer at {path} is already open in this process")]
    AlreadyOpen {
        /// The data directory.
        path: PathBuf,
    },
    /// An I/O error of the data directory.
    #[error("store-and-forward buffer at {path}: {source}")]
    Io {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An LMDB error other than I/O.
    #[error("store-and-forward buffer at {path}: LMDB: {message}")]
    Storage {
        /// The data directory.
        path: PathBuf,
        /// LMDB's description.
        message: String,
    },
    /// A stored record could not be decoded (a damaged or foreign file).
    #[error("store-and-forward record `{key}` is damaged: {message}")]
    Corrupt {
        /// The record key, printable.
        key: String,
        /// What failed.
        message: String,
    },
    /// The engine is shutting down or closed and takes no more work.
    #[error("store-and-forward buffer is closed")]
    Closed,
    /// No such message.
    #[error("no store-and-forward message with id `{0}`")]
    NotFound(String),
    /// An operator action that does not apply to the message's current status.
    #[error("message `{id}` is {status}, not {expected}")]
    WrongStatus {
        /// The message id.
        id: String,
        /// Its status.
        status: &'static str,
        /// What the action needs.
        expected: &'static str,
    },
    /// A line of an import file that is not a message.
    #[error("import line {line}: {message}")]
    Import {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The forwarder needs a tokio runtime.
    #[error("the store-and-forward forwarder must be started inside a tokio runtime")]
    NoRuntime,
}

impl SafError {
    /// Convert a heed error, naming the data directory.
    pub(crate) fn from_heed(path: &std::path::Path, error: heed::Error) -> SafError {
        match error {
            heed::Error::Io(io) => {
                if matches!(io.raw_os_error(), Some(28) | Some(122)) {
                    SafError::DiskFull {
                        path: path.to_owned(),
                    }
                } else {
                    SafError::Io {
                        path: path.to_owned(),
                        source: io,
                    }
                }
            }
            heed::Error::EnvAlreadyOpened => SafError::AlreadyOpen {
                path: path.to_owned(),
            },
            other => SafError::Storage {
                path: path.to_owned(),
                message: other.to_string(),
            },
        }
    }

    /// A copy for every producer of a failed batch (`io::Error` is not `Clone`).
    pub(crate) fn duplicate(&self) -> SafError {
        match self {
            SafError::DiskFull { path } => SafError::DiskFull { path: path.clone() },
            SafError::Io { path, source } => SafError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            SafError::Storage { path, message } => SafError::Storage {
                path: path.clone(),
                message: message.clone(),
            },
            other => SafError::Storage {
                path: PathBuf::new(),
                message: other.to_string(),
            },
        }
    }
}
