//! The page's side of the model worker: starts `worker_loader.js` (made by trunk from
//! `src/bin/worker.rs`), sends [`Request`]s and hands [`Event`]s to a callback.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker};

use crate::web::error::{Error, Result};
use crate::web::protocol::{from_json, to_json, Event, Failed, Request};

/// The worker script trunk writes next to the page.
const WORKER_SCRIPT: &str = "./worker_loader.js";

/// A running model worker.
pub struct WorkerClient {
    worker: Worker,
    /// Messages waiting for the worker to start (`None` once it has).
    queued: Rc<RefCell<Option<Vec<JsValue>>>>,
    // Kept alive as long as the worker.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl WorkerClient {
    /// Starts a worker whose events go to `on_event` (a message the page cannot parse as an
    /// [`Error::Protocol`]).
    pub fn start(on_event: impl Fn(Result<Event>) + Clone + 'static) -> Result<Self> {
        let worker = Worker::new(WORKER_SCRIPT)?;
        let queued: Rc<RefCell<Option<Vec<JsValue>>>> = Rc::new(RefCell::new(Some(vec![])));
        let handler = on_event.clone();
        let (started, target) = (queued.clone(), worker.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let text = event.data().as_string().unwrap_or_default();
            match from_json(&text) {
                Ok(Event::Started) => {
                    for message in started.take().unwrap_or_default() {
                        post(&target, &message);
                    }
                }
                Ok(event) => handler(Ok(event)),
                Err(e) => handler(Err(Error::Protocol(e))),
            }
        });
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let message = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .unwrap_or_else(|| "the model worker failed to start".into());
            on_event(Ok(Event::Error {
                failed: Failed::Load,
                message: format!("model worker: {message}"),
            }));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            worker,
            queued,
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Sends a request, with `attachment` (a `File`, or `undefined`) beside it.
    pub fn send(&self, request: &Request, attachment: &JsValue) {
        let message: JsValue =
            js_sys::Array::of2(&JsValue::from_str(&to_json(request)), attachment).into();
        match self.queued.borrow_mut().as_mut() {
            Some(queue) => queue.push(message),
            None => post(&self.worker, &message),
        }
    }

    /// Stops the worker at once (whatever it is doing).
    pub fn terminate(&self) {
        self.worker.terminate();
    }
}

fn post(worker: &Worker, message: &JsValue) {
    if let Err(e) = worker.post_message(message) {
        web_sys::console::error_1(&e);
    }
}
