//! The model worker: loads a model (fetching, caching and reading GGUF files) and generates
//! rounds of candidates, posting [`Event`]s to the page. A round runs one decode step at a
//! time and hands control back to the worker's event loop every few tens of milliseconds, so a
//! [`Request::Stop`] ends it at once and the model and its caches stay loaded.

mod load;
mod post;

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::rc::Rc;

use js_sys::Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::MessageEvent;

use crate::data::records::CandidateRecord;
use crate::data::story::TokenPrefix;
use crate::engine::alternatives::top_alternatives;
use crate::engine::generate::{CachePool, CandidateSpec, Generation, Round, TokenEvent};
use crate::engine::loader::LoadedModel;
use crate::engine::profile::SpanTimes;
use crate::picker::train::TrainOptions;
use crate::picker::Picker;
use crate::session::round_input_ids;
use crate::web::dom::now_ms;
use crate::web::error::Context;
use crate::web::opfs;
use crate::web::protocol::{from_js, Event, Failed, Request};
use load::load;
pub use post::wasm_memory_bytes;
use post::{post, post_error, scope};

/// A running round hands control back to the event loop at least this often (milliseconds),
/// so that a stop request is read.
const YIELD_INTERVAL_MS: f64 = 30.0;

/// The worker's state.
#[derive(Default)]
struct State {
    /// The loaded model (taken out while a round runs on it).
    model: RefCell<Option<LoadedModel>>,
    /// The caches of the last rounds, so a round runs only what they do not hold (taken out
    /// while a round runs).
    pool: RefCell<CachePool>,
    /// The page's number of the round being generated.
    running: Cell<Option<u64>>,
    /// Set by a stop request: the running round ends at its next step.
    stop: Cell<bool>,
    /// Time per engine span, added to each round's stats when the worker was started with
    /// `?profile` (the page's address had it).
    profile: Option<SpanTimes>,
}

/// Starts the worker: installs the message handler.
pub fn run() {
    console_error_panic_hook::set_once();
    let profiled = scope().location().search().contains("profile");
    let state = Rc::new(State {
        profile: profiled.then(SpanTimes::install).flatten(),
        ..State::default()
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = Array::from(&event.data());
        let attachment = data.get(1);
        match from_js::<Request>(data.get(0)) {
            // Read at once, not queued behind the round it stops.
            Ok(Request::Stop { round }) => {
                if state.running.get() == Some(round) {
                    state.stop.set(true);
                }
            }
            Ok(request) => {
                if let Err(e) = request.check() {
                    return post_error(request.failed(), e.to_string());
                }
                let state = state.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    handle(request, attachment, &state).await;
                });
            }
            Err(e) => post_error(Failed::Generate, e.to_string()),
        }
    });
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Event::Started);
}

async fn handle(request: Request, attachment: JsValue, state: &State) {
    match request {
        Request::LoadModel { source } => {
            // A round runs on the old model: stop it and wait until it has ended.
            stop_running_round(state).await;
            // Free the old model first: two BLOOM-560m copies may not fit in wasm32 memory.
            state.model.replace(None);
            state.pool.borrow_mut().clear();
            match load(source, attachment).await {
                Ok((loaded, ready)) => {
                    state.model.replace(Some(loaded));
                    post(&ready);
                }
                Err(e) => post_error(Failed::Load, e.to_string()),
            }
        }
        Request::Generate {
            round,
            text,
            known,
            candidates,
        } => {
            // The page runs one round at a time, so a round still running here is one it has
            // left (Stop, then at once Write or the autopilot's next round; or a Stop that came
            // before its round had started).
            stop_running_round(state).await;
            let Some(loaded) = state.model.borrow_mut().take() else {
                return post_error(Failed::Generate, "no model is loaded yet".into());
            };
            let mut pool = state.pool.take();
            state.running.set(Some(round));
            state.stop.set(false);
            let result =
                generate_round(&loaded, &mut pool, state, round, &text, known, &candidates).await;
            state.model.replace(Some(loaded));
            state.pool.replace(pool);
            state.running.set(None);
            if let Err(e) = result {
                post_error(Failed::Generate, e.to_string());
            }
        }
        // Handled as the message arrives (see `run`).
        Request::Stop { .. } => {}
        Request::ListCached => list_cached().await,
        Request::DeleteCached { name } => {
            let deleted = opfs::delete(&name).await;
            if let Err(e) = deleted.context(format!("could not delete {name}")) {
                post_error(Failed::Cache, e.to_string());
            }
            list_cached().await;
        }
        Request::Decode { record_id, ids } => {
            if let Some(loaded) = &*state.model.borrow() {
                let pieces = ids
                    .iter()
                    .map(|id| loaded.tokenizer.decode(&[*id]).unwrap_or_default())
                    .collect();
                post(&Event::Pieces { record_id, pieces });
            }
        }
        Request::Alternatives {
            record_id,
            index,
            ids,
            top,
        } => {
            let model = state.model.borrow();
            let Some(loaded) = model.as_ref() else {
                let why = if state.running.get().is_some() {
                    "the model is writing a round: select the token again once it is done"
                } else {
                    "no model is loaded yet"
                };
                return post_error(Failed::Alternatives, why.into());
            };
            let pool = state.pool.borrow();
            match top_alternatives(&loaded.model, &loaded.tokenizer, &pool, &ids, top) {
                Ok(alternatives) => post(&Event::Alternatives {
                    record_id,
                    index,
                    alternatives,
                }),
                Err(e) => post_error(Failed::Alternatives, e.to_string()),
            }
        }
        Request::TrainPicker { records } => train_picker(&records),
    }
}

/// Trains a picker on the writer's records, posting progress at most every
/// [`post::PROGRESS_INTERVAL_MS`], then the picker (or why it could not be trained).
fn train_picker(records: &[CandidateRecord]) {
    let mut last_post = f64::NEG_INFINITY;
    let trained = Picker::train_with_progress(records, &TrainOptions::default(), &mut |done| {
        if now_ms() - last_post >= post::PROGRESS_INTERVAL_MS {
            last_post = now_ms();
            post(&Event::PickerProgress { done });
        }
    });
    match trained {
        Ok(picker) => post(&Event::PickerTrained {
            picker: Box::new(picker),
        }),
        Err(e) => post_error(Failed::Picker, e.to_string()),
    }
}

/// Stops the round being written, if any, and waits until it has ended.
async fn stop_running_round(state: &State) {
    if state.running.get().is_some() {
        state.stop.set(true);
        while state.running.get().is_some() {
            yield_to_events().await;
        }
    }
}

/// Decodes a started round to its end one step at a time, handing control back to the event
/// loop at least every [`YIELD_INTERVAL_MS`] (so messages are read) and stopping the round at
/// its next step once `stop` is set. Shared by the app's worker and the package's (`pkg/`).
pub async fn decode_round(
    mut running: Round<'_>,
    stop: &Cell<bool>,
    mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> crate::Result<Generation> {
    let mut last_yield = now_ms();
    loop {
        if stop.get() {
            running.stop();
        }
        if !running.step(&mut on_token)? {
            break;
        }
        if now_ms() - last_yield >= YIELD_INTERVAL_MS {
            yield_to_events().await;
            last_yield = now_ms();
        }
    }
    running.finish()
}

/// Lets the worker's event loop run (messages are read) before going on.
async fn yield_to_events() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback(&resolve);
    });
    let _ = JsFuture::from(promise).await;
}

async fn list_cached() {
    match opfs::list()
        .await
        .context("could not list the cached models")
    {
        Ok(models) => post(&Event::Cached { models }),
        Err(e) => post_error(Failed::Cache, e.to_string()),
    }
}

/// Writes one round: the story's ids after what the kept caches hold, then the candidates
/// ([`decode_round`]), streaming tokens and posting [`Event::RoundDone`].
async fn generate_round(
    loaded: &LoadedModel,
    pool: &mut CachePool,
    state: &State,
    round: u64,
    text: &str,
    known: Option<TokenPrefix>,
    candidates: &[CandidateSpec],
) -> crate::Result<()> {
    if let Some(times) = &state.profile {
        times.reset();
    }
    let input_ids = round_input_ids(loaded, text, known.as_ref(), candidates)?;
    let running = pool.start_round(&loaded.model, &loaded.tokenizer, &input_ids, candidates)?;
    let on_token = |token: TokenEvent<'_>| {
        post(&Event::Token {
            round,
            candidate: token.candidate,
            text: token.text.to_string(),
        });
        ControlFlow::Continue(())
    };
    let mut generation = decode_round(running, &state.stop, on_token).await?;
    if let Some(times) = &state.profile {
        generation.stats.spans = times.totals();
    }
    post(&Event::RoundDone {
        round,
        input_ids,
        generation,
        wasm_memory_bytes: wasm_memory_bytes(),
    });
    Ok(())
}
