//! Failures as JavaScript `Error`s with a `code`, and the conversions of values to and from
//! JavaScript objects.

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;

/// What kind of failure an error is, as its `code` (the package adds `aborted`, `network` and
/// `crashed` on the JavaScript side).
#[derive(Clone, Copy, Debug)]
pub enum Code {
    /// The model file is not a BLOOM GGUF file the engine can build.
    BadModel,
    /// An argument is malformed or out of range (parameters, ids, tables, records, stories).
    BadParams,
    /// Generating or tokenizing before a model is loaded.
    NoModel,
    /// The model cannot fit in the worker's WebAssembly memory.
    OutOfMemory,
    /// The engine failed on valid input (a tensor operation).
    Internal,
}

impl Code {
    fn name(self) -> &'static str {
        match self {
            Code::BadModel => "bad-model",
            Code::BadParams => "bad-params",
            Code::NoModel => "no-model",
            Code::OutOfMemory => "out-of-memory",
            Code::Internal => "internal",
        }
    }
}

/// A failure: its code and message.
pub struct Failure {
    code: Code,
    message: String,
}

impl Failure {
    /// A failure of kind `code` saying `message`.
    pub fn new(code: Code, message: impl std::fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<Failure> for JsValue {
    /// An `Error` with the message, and the code in its `code` property.
    fn from(failure: Failure) -> JsValue {
        let error = js_sys::Error::new(&failure.message);
        let _ = js_sys::Reflect::set(&error, &"code".into(), &failure.code.name().into());
        error.into()
    }
}

/// Result of the package's functions.
pub type Result<T> = std::result::Result<T, Failure>;

/// Reads argument `what` from a JavaScript value (a `bad-params` failure naming it when it
/// does not have the expected shape).
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| Failure::new(Code::BadParams, format!("{what}: {e}")))
}

/// A library error as a failure of kind `code`.
pub fn library(code: Code) -> impl Fn(storywriter::Error) -> Failure {
    move |e| Failure::new(code, e)
}
