//! The library's error type: every failure names what is wrong and where, and keeps the error
//! that caused it as its `source()`.

/// Everything that can go wrong while loading, quantizing or running a model, or reading and
/// writing the data layer's files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model, tokenizer, config, table or record file is malformed or inconsistent.
    #[error("{0}")]
    Format(String),
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        cause: std::io::Error,
    },
    /// The caller asked for something the model cannot do (bad ids, bad parameters, …).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed (a `candle_core::Error`; the engine converts it, so that this
    /// type, and with it the data layer, does not depend on candle).
    #[error("{0}")]
    Tensor(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            cause: source,
        }
    }
}
