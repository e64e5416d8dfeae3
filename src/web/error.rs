//! The web app's error type: what the browser, the library or a message from the other side of
//! the page ⇄ worker channel got wrong, as one value the page can show.

use wasm_bindgen::{JsCast, JsValue};

/// Something the page or the model worker could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A browser API failed; the JavaScript error's message.
    #[error("{0}")]
    Browser(String),
    /// The library failed (a model, a table, a story, …).
    #[error(transparent)]
    Library(#[from] crate::Error),
    /// JSON that does not parse (or, never in practice, does not serialize).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A server answered a fetch with an error status.
    #[error("{url}: the server answered {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The model worker sent a message the page cannot parse.
    #[error("the model worker sent a message the page does not understand: {0}")]
    Protocol(#[source] crate::Error),
    /// What failed, in words, where no other variant fits (IndexedDB missing from this
    /// browser, a cached file gone, …).
    #[error("{0}")]
    Other(String),
    /// `cause`, while doing `what` (a file, a URL, an action).
    #[error("{what}: {cause}")]
    In {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        cause: Box<Error>,
    },
}

/// Result with the web app's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// `cause`, as the reason `what` failed.
    pub fn doing(what: impl std::fmt::Display, cause: impl Into<Error>) -> Self {
        Error::In {
            what: what.to_string(),
            cause: Box::new(cause.into()),
        }
    }
}

impl From<JsValue> for Error {
    /// The JavaScript error's message (or the value as text).
    fn from(value: JsValue) -> Self {
        if let Some(error) = value.dyn_ref::<js_sys::Error>() {
            return Error::Browser(String::from(error.message()));
        }
        Error::Browser(value.as_string().unwrap_or_else(|| format!("{value:?}")))
    }
}

/// Names what was being done when an error happened.
pub trait Context<T> {
    /// The error, as the cause of a failure of `what`.
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| Error::doing(what, e))
    }
}

/// What a failed IndexedDB transaction's error (`name`, `message`) means for the writer: Chromium gives a
/// full storage (QuotaExceededError) no message at all.
pub fn transaction_error(name: &str, message: &str) -> String {
    if name == "QuotaExceededError" {
        return format!(
            "the browser's storage for this page is full ({name}{}{message}), so nothing was \
             written; the story stays as it is in this page. Free some space (delete cached \
             models under \"Models\", or other sites' data in the browser's settings) and try \
             again, or export the dataset first",
            if message.is_empty() { "" } else { ": " }
        );
    }
    if message.is_empty() {
        format!("IndexedDB transaction failed ({name})")
    } else {
        message.to_string()
    }
}
