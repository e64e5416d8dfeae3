//! The page's side of the model worker: starts it (the threaded build through
//! `worker_threads.js`, a module worker, or a single-threaded one through `worker_loader.js`: the
//! relaxed-SIMD or simd128 build, as [`threads::plan`] decides), sends [`Request`]s and hands
//! [`Event`]s to a callback. A worker that fails to start is replaced by its plan's fallback
//! (threaded → single-threaded, relaxed → simd128), and the speed line says so.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::web::error::{Error, Result};
use crate::web::protocol::{from_js, to_js, Event, Failed, Request};
use crate::web::threads::{self, ThreadPlan};

/// The single-threaded worker's loader (trunk builds `worker.js` next to the page).
const SINGLE_SCRIPT: &str = "./worker_loader.js";
/// The threaded worker's loader (a module worker importing `threads/worker.js`).
const THREADED_SCRIPT: &str = "./worker_threads.js";

/// A running model worker.
pub struct WorkerClient {
    state: Rc<RefCell<State>>,
}

/// The worker, which a failed threaded start replaces.
struct State {
    worker: Option<Worker>,
    /// Messages waiting for the worker to start (`None` once it has).
    queued: Option<Vec<JsValue>>,
    // Kept alive as long as the worker.
    closures: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

type Handler = Rc<dyn Fn(Result<Event>)>;

impl WorkerClient {
    /// Starts a worker whose events go to `on_event` (a message the page cannot parse as an
    /// [`Error::Protocol`]).
    pub fn start(on_event: impl Fn(Result<Event>) + Clone + 'static) -> Result<Self> {
        let state = Rc::new(RefCell::new(State {
            worker: None,
            queued: Some(vec![]),
            closures: vec![],
        }));
        spawn(&state, threads::plan(), Rc::new(on_event))?;
        Ok(Self { state })
    }

    /// Sends a request, with `attachment` (a `File`, or `undefined`) beside it.
    pub fn send(&self, request: &Request, attachment: &JsValue) {
        let message: JsValue = js_sys::Array::of2(&to_js(request), attachment).into();
        let mut state = self.state.borrow_mut();
        let State { queued, worker, .. } = &mut *state;
        match (queued, worker) {
            (Some(queue), _) => queue.push(message),
            (None, Some(worker)) => post(worker, &message),
            (None, None) => {}
        }
    }

    /// Stops the worker at once (whatever it is doing).
    pub fn terminate(&self) {
        if let Some(worker) = self.state.borrow_mut().worker.take() {
            worker.terminate();
        }
    }
}

/// Starts the worker `plan` asks for into `state`.
fn spawn(state: &Rc<RefCell<State>>, plan: ThreadPlan, on_event: Handler) -> Result<()> {
    let mut query = vec![];
    if plan.threads > 1 {
        query.push(format!("threads={}", plan.threads));
    } else if plan.relaxed {
        query.push("relaxed".to_string());
    }
    if profiling() {
        query.push("profile".to_string());
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let worker = if plan.threads > 1 {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        Worker::new_with_options(&format!("{THREADED_SCRIPT}{query}"), &options)?
    } else {
        Worker::new(&format!("{SINGLE_SCRIPT}{query}"))?
    };
    // A worker that reports a failed start before `Started` gives way to its plan's fallback.
    let fall_back = {
        let (state, on_event, plan) = (state.clone(), on_event.clone(), plan.clone());
        move |message: String| -> bool {
            if state.borrow().queued.is_none() {
                return false;
            }
            let Some(plan) = plan.fallback(&message) else {
                return false;
            };
            let (state, on_event) = (state.clone(), on_event.clone());
            // Not from inside the failing worker's own handler, which `spawn` replaces.
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(old) = state.borrow_mut().worker.take() {
                    old.terminate();
                }
                if let Err(e) = spawn(&state, plan, on_event.clone()) {
                    on_event(Ok(Event::Error {
                        failed: Failed::Load,
                        message: format!("the model worker did not start: {e}"),
                    }));
                }
            });
            true
        }
    };
    if plan.threads > 1 {
        watch_start(state, &worker, fall_back.clone());
    }
    let on_message = {
        let (state, on_event, fall_back) = (state.clone(), on_event.clone(), fall_back.clone());
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let Some(event) = event.dyn_ref::<MessageEvent>() else {
                return;
            };
            match from_js(event.data()) {
                Ok(Event::Started) => {
                    threads::set_current(plan.clone());
                    let (queued, worker) = {
                        let mut state = state.borrow_mut();
                        (state.queued.take(), state.worker.clone())
                    };
                    if let Some(worker) = worker {
                        for message in queued.unwrap_or_default() {
                            post(&worker, &message);
                        }
                    }
                }
                Ok(Event::Error {
                    failed: Failed::Load,
                    message,
                }) if fall_back(message.clone()) => {}
                Ok(event) => on_event(Ok(event)),
                Err(e) => on_event(Err(Error::Protocol(e))),
            }
        })
    };
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let message = event
            .dyn_ref::<web_sys::ErrorEvent>()
            .map(|e| e.message())
            .unwrap_or_else(|| "the model worker failed to start".into());
        if !fall_back(message.clone()) {
            on_event(Ok(Event::Error {
                failed: Failed::Load,
                message: format!("model worker: {message}"),
            }));
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let mut state = state.borrow_mut();
    state.worker = Some(worker);
    state.closures = vec![on_message, on_error];
    Ok(())
}

/// How long the page waits for a threaded worker to start (0.5–2 s in Chromium and Firefox on
/// the 2-core VM) before it starts another, then one thread ([`ThreadPlan::fallback`]). Longer
/// than `worker_threads.js`'s own 15 s limit, which reports a pool that does not come up; this
/// one catches a worker that cannot even report it (in Firefox ESR, now and then, the worker's
/// `new Worker` for a thread never returns, so that its own timer never fires).
const THREADED_START_TIMEOUT_MS: i32 = 20_000;

/// Falls back (`fall_back`) to one thread unless `worker`, the one in `state`, has started within
/// [`THREADED_START_TIMEOUT_MS`].
fn watch_start(
    state: &Rc<RefCell<State>>,
    worker: &Worker,
    fall_back: impl Fn(String) -> bool + 'static,
) {
    let (state, worker) = (Rc::downgrade(state), worker.clone());
    let check = Closure::once_into_js(move || {
        let Some(state) = state.upgrade() else {
            return;
        };
        let waiting = {
            let state = state.borrow();
            state.queued.is_some() && state.worker.as_ref() == Some(&worker)
        };
        if waiting {
            fall_back(format!(
                "its threads did not start within {} s",
                THREADED_START_TIMEOUT_MS / 1000
            ));
        }
    });
    if let Some(window) = web_sys::window() {
        let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            check.unchecked_ref(),
            THREADED_START_TIMEOUT_MS,
        );
    }
}

fn post(worker: &Worker, message: &JsValue) {
    if let Err(e) = worker.post_message(message) {
        web_sys::console::error_1(&e);
    }
}

/// Whether the page's address asks for a profile (`?profile`): the worker then adds the time
/// per engine span to each round's stats.
fn profiling() -> bool {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .is_some_and(|search| search.contains("profile"))
}
