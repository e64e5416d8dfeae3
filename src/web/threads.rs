//! How many threads the model worker runs, and which build: the page's side of wasm threads.
//!
//! The threaded build (`threads/worker.js`, built by `scripts/lib.sh build_threaded_worker`:
//! shared memory, rayon's pool on Web Workers, relaxed SIMD) needs a cross-origin isolated page
//! (`storywriter serve` sends COOP/COEP; on other hosts the service worker adds them from the
//! second visit on) and a browser with relaxed SIMD. Otherwise, or with one thread asked, a
//! single-threaded build runs (`relaxed/worker.js` with relaxed SIMD when the browser has it,
//! else `worker.js` with simd128 alone), and [`describe`] says why on the speed line.

use std::cell::RefCell;

use wasm_bindgen::JsValue;
use web_sys::HtmlSelectElement;

use crate::web::dom::{append, by_testid, on, text_el};

/// `localStorage` key of the thread count the writer chose.
const THREADS_KEY: &str = "storywriter.threads";
/// The default count's ceiling: more threads than this gain little for a 560m model.
const DEFAULT_MAX: usize = 4;

/// The build and thread count the next model worker starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Threads of the model worker (1: a single-threaded build).
    pub threads: usize,
    /// Whether the build's kernels use relaxed SIMD (the threaded build always does; one thread
    /// runs the relaxed single-threaded build when the browser has relaxed SIMD, else the
    /// simd128 one).
    pub relaxed: bool,
    /// Why fewer threads than asked run, when they do.
    pub note: Option<String>,
    /// Whether this start is a threaded build's second (its first did not come up).
    pub retry: bool,
}

impl ThreadPlan {
    /// One thread, in the relaxed single-threaded build when the browser has relaxed SIMD.
    pub fn single(note: Option<String>) -> Self {
        Self {
            threads: 1,
            relaxed: has_relaxed_simd(),
            note,
            retry: false,
        }
    }

    /// What to start when a worker of this plan fails to start with `message`: a threaded
    /// worker is started once more (in Firefox ESR a worker's `new Worker` for rayon's pool now
    /// and then never returns, mostly while other workers of the page start or stop; README
    /// "Browsers"), then gives way to one thread; the relaxed single-threaded build gives way
    /// to the simd128 one.
    pub fn fallback(&self, message: &str) -> Option<Self> {
        if self.threads > 1 && !self.retry {
            Some(Self {
                retry: true,
                ..self.clone()
            })
        } else if self.threads > 1 {
            let note =
                format!("single-threaded: the threaded build did not start, twice: {message}");
            Some(Self::single(Some(note)))
        } else if self.relaxed {
            Some(Self {
                relaxed: false,
                note: Some(format!(
                    "simd128: the relaxed-SIMD build did not start: {message}"
                )),
                ..self.clone()
            })
        } else {
            None
        }
    }
}

thread_local! {
    /// The plan of the running worker, for [`describe`].
    static CURRENT: RefCell<Option<ThreadPlan>> = const { RefCell::new(None) };
}

/// Logical cores the browser reports (at least 1).
fn cores() -> usize {
    web_sys::window()
        .map(|w| w.navigator().hardware_concurrency() as usize)
        .unwrap_or(1)
        .max(1)
}

/// The thread count the writer chose, or `min(4, cores)`.
fn asked() -> usize {
    let stored = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(THREADS_KEY).ok().flatten())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1);
    stored.unwrap_or_else(|| cores().min(DEFAULT_MAX))
}

/// Whether `name` on the global object is `true`.
fn global_flag(name: &str) -> bool {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .map(|v| v.is_truthy())
        .unwrap_or(false)
}

/// Whether this browser validates relaxed SIMD: a function doing `i8x16.relaxed_swizzle`.
fn has_relaxed_simd() -> bool {
    const MODULE: [u8; 36] = [
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
        0x03, 0x02, 0x01, 0x00, // one function of that type
        0x0a, 0x0f, 0x01, 0x0d, 0x00, // code: one body of 13 bytes, no locals
        0x41, 0x01, 0xfd, 0x0f, 0x41, 0x02, 0xfd, 0x0f, // i8x16.splat(1), i8x16.splat(2)
        0xfd, 0x80, 0x02, 0x0b, // i8x16.relaxed_swizzle, end
    ];
    let bytes = js_sys::Uint8Array::from(&MODULE[..]);
    js_sys::WebAssembly::validate(&bytes).unwrap_or(false)
}

/// The plan for the next worker: the asked count, capped by the machine, and the
/// single-threaded build when the page or the browser cannot run threads.
pub fn plan() -> ThreadPlan {
    let (asked, cores) = (asked(), cores());
    let mut note = None;
    let mut threads = asked;
    if asked > cores {
        threads = cores;
        note = Some(format!("{asked} threads asked, this machine has {cores}"));
    }
    if threads > 1 {
        let missing = if !global_flag("crossOriginIsolated") {
            Some("the page is not cross-origin isolated (embedded, or served without COOP/COEP)")
        } else if !has_relaxed_simd() {
            Some("this browser has no relaxed SIMD")
        } else {
            None
        };
        if let Some(why) = missing {
            threads = 1;
            note = Some(format!("single-threaded: {why}"));
        }
    }
    if threads == 1 {
        return ThreadPlan::single(note);
    }
    ThreadPlan {
        threads,
        relaxed: true,
        note,
        retry: false,
    }
}

/// Records the plan the running worker started with (or fell back to).
pub fn set_current(plan: ThreadPlan) {
    CURRENT.with(|c| *c.borrow_mut() = Some(plan));
}

/// The running worker's plan (one thread of the simd128 build before any has started).
pub fn current() -> ThreadPlan {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or(ThreadPlan {
        threads: 1,
        relaxed: false,
        note: None,
        retry: false,
    })
}

/// The running worker's threads for the speed line, e.g. `2 threads` or
/// `1 thread (single-threaded: the page is not cross-origin isolated …)`.
pub fn describe() -> (usize, String) {
    let plan = current();
    let noun = if plan.threads == 1 {
        "thread"
    } else {
        "threads"
    };
    let text = match &plan.note {
        Some(note) => format!("{} {noun} ({note})", plan.threads),
        None => format!("{} {noun}", plan.threads),
    };
    (plan.threads, text)
}

/// Fills the Settings menu (1 to the machine's cores, the asked count selected) and calls
/// `restart` after storing a new choice: a worker's thread pool is fixed once started.
pub fn bind_setting(restart: impl Fn() + 'static) {
    let select: HtmlSelectElement = wasm_bindgen::JsCast::unchecked_into(by_testid("threads"));
    let (asked, cores) = (asked(), cores());
    for n in 1..=cores.max(asked) {
        let label = match n {
            n if n > cores => format!("{n} (more than this machine's {cores})"),
            n if n == cores.min(DEFAULT_MAX) => format!("{n} (default)"),
            n => n.to_string(),
        };
        let option = text_el("option", "", &label);
        let _ = option.set_attribute("value", &n.to_string());
        append(&select, &option);
    }
    select.set_value(&asked.to_string());
    let menu = select.clone();
    on::<web_sys::Event>(&select, "change", move |_| {
        if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = storage.set_item(THREADS_KEY, &menu.value());
        }
        restart();
    });
}
