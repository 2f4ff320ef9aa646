//! The crate's one error type.
//!
//! Every failure a caller can meet at run time is a variant here, with enough context to act
//! on it: which file and offset held bad bytes, which limit was exceeded, whether the engine
//! instance must be reopened. Broken invariants are bugs and panic through assertions
//! instead; they never appear as an `Error`.

use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when using the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error during {operation} on {file}: {source}")]
    Io {
        /// What the engine was doing (`"read"`, `"write"`, `"sync"`, ...).
        operation: &'static str,
        /// The file inside the database directory (or the directory itself).
        file: String,
        /// The underlying error from the filesystem.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail a checksum or a structural check.
    #[error("corruption in {file} at offset {offset}: {detail}")]
    Corruption {
        /// The file inside the database directory.
        file: String,
        /// Byte offset of the damaged structure in that file.
        offset: u64,
        /// What was expected and what was found.
        detail: String,
    },
    /// The record handle names no live record (deleted, reused slot, or never valid).
    #[error("record not found")]
    NotFound,
    /// Another process holds a lock that a non-blocking call needed.
    #[error("database is locked by another process: {0}")]
    Locked(String),
    /// A value exceeds one of the engine's limits.
    #[error("{what} is too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The caller passed an argument the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file was written in a format this build does not read: by an older or a newer
    /// version of mentedb-storage. Nothing was changed.
    #[error("{file} is in format version {found}, written by {}; this build reads version {supported} only", if found > supported { "a newer mentedb-storage" } else { "an older mentedb-storage" })]
    UnsupportedFormat {
        /// The file.
        file: String,
        /// The format version it carries.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },
    /// A write failed at a point where it may or may not have been committed (its
    /// `fdatasync` failed, or a failed append could not be undone): after a reopen it is
    /// either wholly there or wholly absent. Look before retrying (a retry could store it
    /// twice). The instance refuses further writes ([`Error::Poisoned`]); reopen it.
    #[error("the write may or may not have been committed: {0}; reopen, then look before retrying")]
    OutcomeUnknown(String),
    /// The engine was closed.
    #[error("the storage engine is closed")]
    Closed,
    /// A previous `fsync` failed: durability of this instance can no longer be promised.
    /// Writes are refused; reopen the database to run recovery.
    #[error(
        "the storage engine is poisoned by an earlier failure and refuses writes: {0}; reopen it"
    )]
    Poisoned(String),
}

impl Error {
    /// An equal error, for handing one failure to several callers (an I/O source is rebuilt
    /// with the same kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io {
                operation,
                file,
                source,
            } => Error::Io {
                operation,
                file: file.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption {
                file,
                offset,
                detail,
            } => Error::corruption(file.clone(), *offset, detail.clone()),
            Error::NotFound => Error::NotFound,
            Error::Locked(detail) => Error::Locked(detail.clone()),
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what,
                size: *size,
                limit: *limit,
            },
            Error::InvalidArgument(detail) => Error::InvalidArgument(detail.clone()),
            Error::UnsupportedFormat {
                file,
                found,
                supported,
            } => Error::UnsupportedFormat {
                file: file.clone(),
                found: *found,
                supported: *supported,
            },
            Error::OutcomeUnknown(reason) => Error::OutcomeUnknown(reason.clone()),
            Error::Closed => Error::Closed,
            Error::Poisoned(reason) => Error::Poisoned(reason.clone()),
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<String>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// Builds an [`Error::Io`] for `operation` on `file`.
    pub fn io(operation: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            operation,
            file: file.into(),
            source,
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Io {
            operation: "I/O",
            file: String::from("<unknown>"),
            source,
        }
    }
}

/// Why a byte slice could not be decoded. Pure decoders return this; the caller knows the
/// file and offset and turns it into [`Error::Corruption`] with [`DecodeError::at`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    /// Creates a decode error with a description of what was wrong.
    pub fn new(detail: impl Into<String>) -> Self {
        DecodeError(detail.into())
    }

    /// Places the error in a file at an offset.
    pub fn at(self, file: impl Into<String>, offset: u64) -> Error {
        Error::corruption(file, offset, self.0)
    }
}
