//! One error type for the whole library, with a kind that maps to a stable C status code.
//!
//! Every fallible path a user or a C caller can reach returns [`Result`]. The kind says what went
//! wrong in a way a program can act on (and what the C ABI reports as its status code); the message
//! says it in words a person can act on: which file, which offset, which URL, what to do next.

use std::fmt;

/// What went wrong, coarsely. The discriminants are the C status codes and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    /// A caller passed a value the API cannot accept (bad flag, null pointer, invalid UTF-8).
    InvalidArgument = 1,
    /// A file or other OS resource could not be read or written.
    Io = 2,
    /// Input data is malformed: a GGUF file that is truncated, inconsistent or out of bounds.
    Format = 3,
    /// Well-formed input that this build does not support (a quant type, an architecture, a version).
    Unsupported = 4,
    /// A named thing does not exist: a catalog model, a tensor, a metadata key.
    NotFound = 5,
    /// A download failed (connection, HTTP status, or a truncated body).
    Network = 6,
    /// Downloaded or cached bytes do not have the expected sha256.
    Checksum = 7,
    /// The request does not fit the context window.
    ContextOverflow = 8,
    /// The memory budget cannot be met.
    OutOfMemory = 9,
    /// The operation was cancelled by the caller.
    Cancelled = 10,
    /// A bug in edgespec: an invariant did not hold.
    Internal = 99,
}

impl ErrorKind {
    /// The stable numeric status code of this kind (0 is reserved for success).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// A short lowercase name, used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Io => "i/o error",
            ErrorKind::Format => "malformed input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotFound => "not found",
            ErrorKind::Network => "network error",
            ErrorKind::Checksum => "checksum mismatch",
            ErrorKind::ContextOverflow => "context overflow",
            ErrorKind::OutOfMemory => "out of memory",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal error",
        }
    }
}

/// An error: a kind, a human-readable message, and optionally the underlying cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for [`ErrorKind::Format`].
    pub fn format(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Format, message)
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// An I/O error about `path`, keeping the OS error as the source.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{context}: {err}")).with_source(err)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with more context ("while opening X: ...").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {:?}", self.kind, self.message)?;
        if let Some(s) = &self.source {
            write!(f, ", source: {s:?}")?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Return early with an error of the given kind and a formatted message.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_kind_and_message() {
        let e = Error::format("bad magic").context("model.gguf");
        assert_eq!(e.to_string(), "malformed input: model.gguf: bad magic");
        assert_eq!(e.kind().code(), 3);
    }

    #[test]
    fn codes_are_distinct() {
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::Io,
            ErrorKind::Format,
            ErrorKind::Unsupported,
            ErrorKind::NotFound,
            ErrorKind::Network,
            ErrorKind::Checksum,
            ErrorKind::ContextOverflow,
            ErrorKind::OutOfMemory,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|&c| c != 0));
    }
}
