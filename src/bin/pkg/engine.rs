//! The package's model: loading a GGUF file, tokenizing, and generating candidates with
//! per-candidate parameters, streamed token by token and stoppable between decode steps.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::rc::Rc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::failure::{from_js, library, Code, Failure, Result};
use storywriter::data::story::{Story, TokenPrefix};
use storywriter::engine::generate::{CachePool, Candidate, CandidateSpec, GenerationStats};
use storywriter::engine::loader::{open_gguf, LoadedModel};
use storywriter::engine::memory_budget::{claim_session_memory, MemoryNeed, MOST_CANDIDATES};
use storywriter::engine::model::KvDtype;
use storywriter::session::round_input_ids;
use storywriter::shared::ModelIdentity;
use storywriter::web::protocol::to_js;
use storywriter::web::worker::{decode_round, wasm_memory_bytes};

/// The most candidates one generation may ask for.
const MAX_CANDIDATES: usize = 16;

/// A loaded model's description.
#[derive(Serialize)]
struct ModelInfo<'a> {
    identity: &'a ModelIdentity,
    name: &'a str,
    vocab_size: usize,
    context_length: usize,
    /// The worker's WebAssembly memory once the model is loaded.
    wasm_memory_bytes: u64,
}

/// What to generate: one input (`text`, `ids` or a `story` continued from its records' ids)
/// and one spec per candidate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    ids: Option<Vec<u32>>,
    #[serde(default)]
    story: Option<Story>,
    candidates: Vec<CandidateSpec>,
}

/// What a generation gives: the ids the model read, the candidates, timings and the model.
#[derive(Serialize)]
struct GenerateResult<'a> {
    input_ids: Vec<u32>,
    candidates: Vec<Candidate>,
    stats: GenerationStats,
    model: &'a ModelIdentity,
    /// The worker's WebAssembly memory after the round.
    wasm_memory_bytes: u64,
}

/// A model and the caches of its last rounds (a round continuing an earlier one runs only
/// what the caches lack).
#[wasm_bindgen]
#[derive(Default)]
pub struct Engine {
    state: Rc<State>,
}

#[derive(Default)]
struct State {
    /// The model (taken out while a round runs on it).
    model: RefCell<Option<LoadedModel>>,
    pool: RefCell<CachePool>,
    /// Set by [`Engine::stop`]: the running round ends at its next step.
    stop: Cell<bool>,
}

#[wasm_bindgen]
impl Engine {
    /// An engine without a model.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Engine {
        console_error_panic_hook::set_once();
        Engine::default()
    }

    /// Refuses (`out-of-memory`) a model file of `bytes` that cannot fit in this worker's
    /// WebAssembly memory, before it is downloaded.
    #[wasm_bindgen(js_name = checkSize)]
    pub fn check_size(name: &str, bytes: f64) -> std::result::Result<(), JsValue> {
        Ok(fits(name, MemoryNeed::new(bytes as u64, None))?)
    }

    /// Builds the model of a GGUF file (replacing any loaded one) and describes it:
    /// `{identity, name, vocab_size, context_length}`.
    pub fn load(&self, bytes: &[u8], name: &str) -> std::result::Result<JsValue, JsValue> {
        self.state.model.replace(None);
        self.state.pool.borrow_mut().clear();
        let mut loaded = build(bytes, name)?;
        // Half the cache's memory in wasm32's 4 GiB, as in the app's worker.
        loaded.model.set_kv_dtype(KvDtype::F16);
        // The session's peak at once, as in the app's worker: the memory stays flat as the
        // story grows (rounds of more than three candidates may still grow it).
        claim_session_memory(name, loaded.model.config(), MOST_CANDIDATES)
            .map_err(|message| Failure::new(Code::OutOfMemory, message))?;
        let info = to_js(&ModelInfo {
            identity: &loaded.identity,
            name,
            vocab_size: loaded.model.config().vocab_size,
            context_length: loaded.model.config().context_length,
            wasm_memory_bytes: wasm_memory_bytes(),
        });
        self.state.model.replace(Some(loaded));
        Ok(info)
    }

    /// The token ids of `text`.
    pub fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, JsValue> {
        let model = self.state.model.borrow();
        let loaded = model.as_ref().ok_or_else(no_model)?;
        Ok(loaded
            .tokenizer
            .encode(text)
            .map_err(library(Code::BadParams))?)
    }

    /// The text of token ids.
    pub fn decode(&self, ids: Vec<u32>) -> std::result::Result<String, JsValue> {
        let model = self.state.model.borrow();
        let loaded = model.as_ref().ok_or_else(no_model)?;
        check_ids(&ids, loaded)?;
        Ok(loaded
            .tokenizer
            .decode(&ids)
            .map_err(library(Code::BadParams))?)
    }

    /// Generates the candidates of `request` (`{text | ids | story, candidates: [{params,
    /// seed}]}`), calling `on_token(candidate, text)` for every token; resolves to
    /// `{input_ids, candidates, stats, model}` (a stopped round's unfinished candidates end
    /// with `finish_reason: "stopped"`).
    pub fn generate(&self, request: JsValue, on_token: js_sys::Function) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let request: GenerateRequest = from_js(request, "the generation request")?;
            let loaded = state.model.borrow_mut().take().ok_or_else(no_model)?;
            let mut pool = state.pool.take();
            state.stop.set(false);
            let result = generate(&loaded, &mut pool, &state.stop, request, &on_token).await;
            state.model.replace(Some(loaded));
            state.pool.replace(pool);
            Ok(result?)
        })
    }

    /// Ends the running generation at its next decode step.
    pub fn stop(&self) {
        self.state.stop.set(true);
    }
}

async fn generate(
    loaded: &LoadedModel,
    pool: &mut CachePool,
    stop: &Cell<bool>,
    request: GenerateRequest,
    on_token: &js_sys::Function,
) -> Result<JsValue> {
    let specs = &request.candidates;
    if specs.is_empty() || specs.len() > MAX_CANDIDATES {
        return Err(bad_params(format!(
            "candidates: give 1 to {MAX_CANDIDATES} candidates, not {}",
            specs.len()
        )));
    }
    for (index, spec) in specs.iter().enumerate() {
        spec.params
            .validate()
            .map_err(|e| bad_params(format!("candidates[{index}].params: {e}")))?;
    }
    let (text, known) = match (request.text, request.ids, request.story) {
        (Some(text), None, None) => (text, None),
        (None, Some(ids), None) => {
            check_ids(&ids, loaded)?;
            let known = TokenPrefix { text_len: 0, ids };
            (String::new(), Some(known))
        }
        (None, None, Some(story)) => {
            let known = story.token_prefix();
            (story.text, known)
        }
        _ => return Err(bad_params("give exactly one of text, ids and story")),
    };
    let input_ids =
        round_input_ids(loaded, &text, known.as_ref(), specs).map_err(library(Code::BadParams))?;
    let running = pool
        .start_round(&loaded.model, &loaded.tokenizer, &input_ids, specs)
        .map_err(engine_failure)?;
    let on_token = |token: storywriter::engine::generate::TokenEvent<'_>| {
        let _ = on_token.call2(
            &JsValue::NULL,
            &JsValue::from(token.candidate as u32),
            &JsValue::from_str(token.text),
        );
        ControlFlow::Continue(())
    };
    let generation = decode_round(running, stop, on_token)
        .await
        .map_err(engine_failure)?;
    Ok(to_js(&GenerateResult {
        input_ids,
        candidates: generation.candidates,
        stats: generation.stats,
        model: &loaded.identity,
        wasm_memory_bytes: wasm_memory_bytes(),
    }))
}

/// Builds a model from a GGUF file's bytes once its size, then its shape and type, show that
/// it fits in memory.
fn build(bytes: &[u8], name: &str) -> Result<LoadedModel> {
    let size = bytes.len() as u64;
    fits(name, MemoryNeed::new(size, None))?;
    let opened = open_gguf(bytes, name, &Device::Cpu).map_err(library(Code::BadModel))?;
    fits(name, MemoryNeed::of_opened(size, &opened))?;
    opened.build(&Device::Cpu).map_err(library(Code::BadModel))
}

fn fits(name: &str, need: MemoryNeed) -> Result<()> {
    need.check(name)
        .map_err(|message| Failure::new(Code::OutOfMemory, message))
}

fn check_ids(ids: &[u32], loaded: &LoadedModel) -> Result<()> {
    let vocab = loaded.model.config().vocab_size;
    match ids.iter().position(|&id| id as usize >= vocab) {
        Some(i) => Err(bad_params(format!(
            "ids[{i}] is {}, beyond the model's {vocab} tokens",
            ids[i]
        ))),
        None => Ok(()),
    }
}

/// An engine error: `bad-params` for what the caller asked (`Invalid`), else `internal`.
fn engine_failure(error: storywriter::Error) -> Failure {
    match error {
        storywriter::Error::Invalid(_) => Failure::new(Code::BadParams, error),
        _ => Failure::new(Code::Internal, error),
    }
}

fn no_model() -> Failure {
    Failure::new(Code::NoModel, "no model is loaded yet: load one first")
}

fn bad_params(message: impl std::fmt::Display) -> Failure {
    Failure::new(Code::BadParams, message)
}
