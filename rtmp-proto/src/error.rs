// SPDX-License-Identifier: MPL-2.0
//! The one error type of the protocol core: a kind to match on and a reason
//! a person can read.

use std::fmt;

/// What went wrong, coarsely, so that callers can react without parsing text.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// More bytes are needed; nothing was consumed. Not a failure of the peer.
    NeedMore,
    /// The bytes do not follow the format.
    Malformed,
    /// Well-formed, but a value this implementation does not know or support.
    Unsupported,
    /// A configured limit (size, count, depth, memory) would be exceeded.
    LimitExceeded,
    /// The peer broke the protocol's rules of sequence (a message out of place).
    Protocol,
    /// The peer refused something we asked (connect, publish, play).
    Rejected,
    /// A deadline passed.
    Timeout,
    /// The connection was closed or is in a state that cannot go on.
    Closed,
    /// A socket or name-resolution failure (from a driver, never the core).
    Io,
    /// The caller gave up (a flush, a stop): not the peer's doing (from a
    /// driver, never the core).
    Cancelled,
}

/// What the peer said when it refused a command: the data behind a
/// `Rejected` error, for callers that act on it (a login's next step, or
/// whether trying again may help).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command refused: "connect", "createStream", "publish", "play".
    pub command: &'static str,
    /// The status code, e.g. `NetConnection.Connect.Rejected`.
    pub code: String,
    /// The peer's explanation, as it sent it.
    pub description: String,
}

/// An error from the protocol core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    reason: String,
    refusal: Option<Box<Refusal>>,
}

impl Error {
    /// An error of `kind`, with a sentence a person can read.
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Error {
            kind,
            reason: reason.into(),
            refusal: None,
        }
    }

    /// The peer refused `refusal.command`; `reason` says so to a person.
    pub fn refused(refusal: Refusal, reason: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Rejected,
            reason: reason.into(),
            refusal: Some(Box::new(refusal)),
        }
    }

    /// What the peer said, when this is its refusal.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_deref()
    }

    /// A decoder needs more bytes; it consumed none.
    pub fn need_more() -> Self {
        Error::new(ErrorKind::NeedMore, "more bytes needed")
    }

    /// The bytes do not follow the format.
    pub fn malformed(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::Malformed, reason)
    }

    /// A value this implementation does not handle.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, reason)
    }

    /// A configured limit would be exceeded.
    pub fn limit(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::LimitExceeded, reason)
    }

    /// The peer broke the protocol's rules of sequence.
    pub fn protocol(reason: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol, reason)
    }

    /// What went wrong, to match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether more bytes would let the decoder go on.
    pub fn is_need_more(&self) -> bool {
        self.kind == ErrorKind::NeedMore
    }

    /// The same error with context put in front of its reason.
    pub fn context(self, what: impl fmt::Display) -> Self {
        if self.kind == ErrorKind::NeedMore {
            return self;
        }
        Error {
            kind: self.kind,
            reason: format!("{what}: {}", self.reason),
            refusal: self.refusal,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
