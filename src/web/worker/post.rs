//! Posting events to the page: errors, and progress reports at a bounded rate.

use wasm_bindgen::JsCast;
use web_sys::DedicatedWorkerGlobalScope;

use crate::web::protocol::{to_js, Event, Failed, Phase};

/// Progress reports are sent at most this often (milliseconds).
pub(super) const PROGRESS_INTERVAL_MS: f64 = 100.0;

/// Progress reports of one phase, posted at most every [`PROGRESS_INTERVAL_MS`].
pub(super) struct Throttle {
    phase: Phase,
    last_ms: f64,
}

impl Throttle {
    pub(super) fn new(phase: Phase) -> Self {
        Self {
            phase,
            last_ms: f64::NEG_INFINITY,
        }
    }

    /// Reports progress unless the last report is too recent.
    pub(super) fn report(&mut self, bytes: u64, total: Option<u64>) {
        let now = js_sys::Date::now();
        if now - self.last_ms >= PROGRESS_INTERVAL_MS {
            self.done(bytes, total);
        }
    }

    /// Reports progress now (the last report of the phase).
    pub(super) fn done(&mut self, bytes: u64, total: Option<u64>) {
        self.last_ms = js_sys::Date::now();
        post(&Event::Progress {
            phase: self.phase,
            bytes,
            total,
        });
    }
}

/// This worker's global scope.
pub(super) fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Posts an event to the page.
pub(super) fn post(event: &Event) {
    let _ = scope().post_message(&to_js(event));
}

/// The size of this worker's WebAssembly memory, in bytes.
pub fn wasm_memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let buffer: js_sys::ArrayBuffer = memory.buffer().unchecked_into();
    u64::from(buffer.byte_length())
}

/// Posts an error of the given kind to the page.
pub(super) fn post_error(failed: Failed, message: String) {
    post(&Event::Error { failed, message });
}
