//! The page: model loading, the writing flow, the story list, export and import, settings.
//!
//! State lives in one [`App`] behind `Rc<RefCell<…>>`; DOM events and worker events change it
//! and re-render the parts they touch. A choice, an undo or an edit is written to IndexedDB
//! first and shown after the write has committed.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{HtmlElement, HtmlSelectElement, KeyboardEvent};

use crate::data::dataset::{parse_records, DatasetFiles, Merger};
use crate::data::params::{Param, Policy, StepTable};
use crate::data::records::{timestamp_now, CandidateRecord};
use crate::data::story::{PlannedCandidate, Story};
use crate::engine::generate::{Generation, GenerationStats};
use crate::session::candidate_specs;
use crate::shared::ModelIdentity;
use crate::web::chart;
use crate::web::dom::{
    append, by_testid, clear, document, download, el, input, js_error, now_ms, on, on_click,
    set_text, show, text_el, textarea, toggle_class, window,
};
use crate::web::idb::{Db, StoredStory};
use crate::web::protocol::{CachedModel, Event, Failed, ModelSource, Phase, Request};
use crate::web::settings::{learned_table, policy_source, Settings, TableSource};
use crate::web::worker_client::WorkerClient;

/// `localStorage` key of the story open when the page was left.
const CURRENT_STORY_KEY: &str = "storywriter.current-story";

/// `localStorage` key of the settings panel's choices ([`SavedSettings`]).
const SETTINGS_KEY: &str = "storywriter.settings";

/// The four manual override fields, by data-testid.
const OVERRIDE_FIELDS: [&str; 4] = [
    "override-temperature",
    "override-top-k",
    "override-top-p",
    "override-max-new-tokens",
];

/// The settings panel's choices as kept across visits: the fields as the writer typed them, so
/// that a reload restores the panel and the settings are read from it as before.
#[derive(Serialize, Deserialize)]
struct SavedSettings {
    /// The policy name of each candidate.
    policies: Vec<String>,
    /// The table source applied last: `bundled`, `url` or `learned`.
    table: String,
    /// The table URL field.
    table_url: String,
    /// The override fields, in the order of [`OVERRIDE_FIELDS`].
    overrides: Vec<String>,
}

/// `localStorage` key of the number of candidates per step the writer chose.
const CANDIDATES_KEY: &str = "storywriter.candidates-per-step";

/// What to tell the writer when a model does not load.
const LOAD_ERROR_HINT: &str = "What to do: check that the file is a BLOOM model in GGUF format \
(made by `storywriter quantize` or llama.cpp) and complete; download it again, or pick another \
source under \"Models\".";

/// The notice while stories cannot be saved.
const UNSAVED: &str = "Not saved: this browser gives the page no storage here (IndexedDB), so the \
story lives in this page only, until it is closed.";

/// What to tell the writer when the hub loader fails.
const HUB_ERROR_HINT: &str = "What to do: check the hub address and the repository name (a BLOOM \
repository with config.json, tokenizer.json and model.safetensors; the server must answer range \
requests, and allow this page with CORS), try again, or pick another source under \"Models\".";

/// `models/index.json`, written by the serve command.
#[derive(Deserialize)]
struct ModelIndex {
    models: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    file: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    demo: bool,
    bytes: Option<u64>,
}

/// A round being generated.
struct Running {
    round: u64,
    planned: Vec<PlannedCandidate>,
    started_ms: f64,
    tokens: Vec<usize>,
}

/// Progress of the current loading phase.
struct Loading {
    phase: Phase,
    started_ms: f64,
}

/// The page's state.
struct App {
    db: Option<Db>,
    worker: Option<WorkerClient>,
    /// The last model source and its attachment, to restart the worker after a stop.
    source: Option<(ModelSource, JsValue)>,
    /// The loaded model's identity (recorded with its candidates).
    model: Option<ModelIdentity>,
    loading: Option<Loading>,
    current: Option<StoredStory>,
    settings: Settings,
    vocab_size: usize,
    next_round: u64,
    running: Option<Running>,
    /// Speed of the last finished round, shown on its cards.
    last_speed: Option<f64>,
    /// The saved table source (URL or learned) is applied again once a model is ready.
    restore_table: bool,
}

type Shared = Rc<RefCell<App>>;

/// Starts the page.
pub fn run() {
    console_error_panic_hook::set_once();
    let app: Shared = Rc::new(RefCell::new(App {
        db: None,
        worker: None,
        source: None,
        model: None,
        loading: None,
        current: None,
        settings: Settings {
            candidates: stored_candidates().unwrap_or(Settings::default().candidates),
            ..Settings::default()
        },
        vocab_size: crate::data::params::BUNDLED_VOCAB_SIZE,
        next_round: 1,
        running: None,
        last_speed: None,
        restore_table: false,
    }));
    let embed = window()
        .location()
        .search()
        .ok()
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .and_then(|p| p.get("embed"))
        .is_some_and(|v| v == "1");
    if embed {
        toggle_class(&document().body().expect("a body"), "embed", true);
    }
    wire(&app);
    start_worker(&app);
    restore_settings(&app);
    render_settings(&app);
    spawn_local(async move {
        open_db(&app).await;
        load_index(&app).await;
    });
}

fn start_worker(app: &Shared) {
    let weak = Rc::downgrade(app);
    let on_event = move |event: Event| {
        if let Some(app) = weak.upgrade() {
            handle_event(&app, event);
        }
    };
    match WorkerClient::start(on_event) {
        Ok(worker) => {
            worker.send(&Request::ListCached, &JsValue::UNDEFINED);
            app.borrow_mut().worker = Some(worker);
        }
        Err(e) => show_load_error(
            &format!("the model worker did not start: {}", js_error(&e)),
            LOAD_ERROR_HINT,
        ),
    }
}

fn send(app: &Shared, request: &Request, attachment: &JsValue) {
    if let Some(worker) = &app.borrow().worker {
        worker.send(request, attachment);
    }
}

// ---------------------------------------------------------------------------------------------
// Model loading

async fn load_index(app: &Shared) {
    let result = async {
        let response: web_sys::Response =
            JsFuture::from(window().fetch_with_str("models/index.json"))
                .await?
                .unchecked_into();
        if !response.ok() {
            return Err(JsValue::from_str(&format!(
                "models/index.json: the server answered {}",
                response.status()
            )));
        }
        let text = JsFuture::from(response.text()?).await?;
        serde_json::from_str::<ModelIndex>(&text.as_string().unwrap_or_default())
            .map_err(|e| JsValue::from_str(&format!("models/index.json: {e}")))
    }
    .await;
    match result {
        Ok(index) => match index.models.into_iter().next() {
            Some(entry) => {
                let source = ModelSource::Url {
                    url: format!("models/{}", entry.file),
                    name: entry.file.clone(),
                    demo: entry.demo,
                    bytes: entry.bytes,
                };
                let label = if entry.label.is_empty() {
                    entry.file
                } else {
                    entry.label
                };
                load_model(app, source, JsValue::UNDEFINED, &label);
            }
            None => set_status("No model next to the page: load one under \"Models\"."),
        },
        Err(e) => {
            set_status(&format!(
                "No model list next to the page ({}): load a model under \"Models\" (URL, local file or a cached one).",
                js_error(&e)
            ));
            open_sources();
        }
    }
}

fn open_sources() {
    let _ = by_testid("model-sources").set_attribute("open", "");
}

fn load_model(app: &Shared, source: ModelSource, attachment: JsValue, label: &str) {
    {
        let mut state = app.borrow_mut();
        state.model = None;
        state.loading = None;
        state.source = Some((source.clone(), attachment.clone()));
    }
    show(&by_testid("model-error"), false);
    show(&by_testid("demo-hint"), false);
    set_status(&format!("Loading {label}…"));
    update_buttons(app);
    send(app, &Request::LoadModel { source }, &attachment);
}

fn set_status(text: &str) {
    set_text(&by_testid("model-status"), text);
}

fn show_load_error(message: &str, hint: &str) {
    let error = by_testid("model-error");
    set_text(
        &error,
        &format!("The model could not be loaded: {message}\n{hint}"),
    );
    show(&error, true);
    set_status("No model loaded (see the error below)");
    show(&by_testid("model-progress"), false);
    set_text(&by_testid("model-progress-text"), "");
    open_sources();
}

fn show_progress(app: &Shared, phase: Phase, bytes: u64, total: Option<u64>) {
    let started_ms = {
        let mut state = app.borrow_mut();
        match &state.loading {
            Some(loading) if loading.phase == phase => loading.started_ms,
            _ => {
                let now = now_ms();
                state.loading = Some(Loading {
                    phase,
                    started_ms: now,
                });
                now
            }
        }
    };
    let progress: web_sys::HtmlProgressElement = by_testid("model-progress").unchecked_into();
    show(&progress, true);
    if let Ok(serde_json::Value::String(name)) = serde_json::to_value(phase) {
        let _ = progress.set_attribute("data-phase", &name);
    }
    let verb = match phase {
        Phase::Download => "Downloading",
        Phase::Read => "Reading",
        Phase::Store => "Caching",
        Phase::Build => "Building the model",
        Phase::Quantize => "Downloading and quantizing",
    };
    let mut text = verb.to_string();
    match total {
        Some(total) if total > 0 && !matches!(phase, Phase::Build | Phase::Store) => {
            let fraction = bytes as f64 / total as f64;
            progress.set_value(fraction);
            text += &format!(
                " {:.0}% · {} of {}",
                fraction * 100.0,
                human_bytes(bytes),
                human_bytes(total)
            );
        }
        _ => {
            progress.remove_attribute("value").ok();
            if phase == Phase::Download {
                text += &format!(" {}", human_bytes(bytes));
            }
        }
    }
    let seconds = (now_ms() - started_ms) / 1000.0;
    if matches!(phase, Phase::Download | Phase::Quantize) && seconds > 0.0 {
        text += &format!(" · {}/s", human_bytes((bytes as f64 / seconds) as u64));
    }
    set_text(&by_testid("model-progress-text"), &text);
}

/// `1.5 MB`, `320 kB`, `12 B`.
fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn render_cached(app: &Shared, models: &[CachedModel]) {
    let list = by_testid("cached-models");
    clear(&list);
    if models.is_empty() {
        append(&list, &text_el("li", "muted", "No cached models yet."));
    }
    for model in models {
        let item = el("li", "");
        append(
            &item,
            &text_el(
                "span",
                "",
                &format!("{} ({}) ", model.name, human_bytes(model.bytes)),
            ),
        );
        let load = text_el("button", "secondary", "Load");
        let name = model.name.clone();
        let handle = app.clone();
        on::<web_sys::Event>(&load, "click", move |_| {
            load_model(
                &handle,
                ModelSource::Cached { name: name.clone() },
                JsValue::UNDEFINED,
                &name,
            )
        });
        let delete = text_el("button", "secondary", "Delete");
        let _ = delete.set_attribute("data-testid", &format!("delete-cached-{}", model.name));
        let name = model.name.clone();
        let handle = app.clone();
        on::<web_sys::Event>(&delete, "click", move |_| {
            send(
                &handle,
                &Request::DeleteCached { name: name.clone() },
                &JsValue::UNDEFINED,
            )
        });
        append(&item, &load);
        append(&item, &delete);
        append(&list, &item);
    }
}

// ---------------------------------------------------------------------------------------------
// Worker events

fn handle_event(app: &Shared, event: Event) {
    match event {
        // Consumed by the worker client.
        Event::Started => {}
        Event::Progress {
            phase,
            bytes,
            total,
        } => show_progress(app, phase, bytes, total),
        Event::Ready {
            identity,
            name,
            demo,
            from_cache,
            vocab_size,
            wasm_memory_bytes,
        } => {
            show_memory(wasm_memory_bytes);
            show(&by_testid("model-progress"), false);
            set_text(&by_testid("model-progress-text"), "");
            let origin = if from_cache { ", from the cache" } else { "" };
            let kind = if demo {
                "demo model, random weights"
            } else {
                ""
            };
            let details = [identity.quantization.as_str(), kind]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            set_status(&format!("Model ready: {name} ({details}{origin})"));
            show(&by_testid("demo-hint"), demo);
            {
                let mut state = app.borrow_mut();
                state.loading = None;
                state.vocab_size = vocab_size;
                if state.settings.source == TableSource::Bundled {
                    state.settings.table = StepTable::bundled_for(vocab_size).0;
                }
                state.model = Some(identity);
            }
            send(app, &Request::ListCached, &JsValue::UNDEFINED);
            update_buttons(app);
            render_chart(app);
            if std::mem::take(&mut app.borrow_mut().restore_table) {
                let app = app.clone();
                spawn_local(async move { apply_table(&app).await });
            }
        }
        Event::Token {
            round,
            candidate,
            text,
        } => {
            let speed = {
                let mut state = app.borrow_mut();
                let Some(running) = state.running.as_mut().filter(|r| r.round == round) else {
                    return;
                };
                if let Some(count) = running.tokens.get_mut(candidate) {
                    *count += 1;
                }
                let seconds = (now_ms() - running.started_ms) / 1000.0;
                (seconds > 0.0).then(|| running.tokens[candidate] as f64 / seconds)
            };
            let card = card(candidate + 1);
            if let Some(body) = part(&card, "text") {
                let _ = body.append_with_str_1(&text);
            }
            if let (Some(meta), Some(speed)) = (part(&card, "meta"), speed) {
                set_text(&meta, &format!("{speed:.1} tok/s · generating…"));
            }
        }
        Event::RoundDone {
            round,
            input_ids,
            generation,
            wasm_memory_bytes,
        } => {
            show_memory(wasm_memory_bytes);
            show_round_stats(round, generation.candidates.len(), &generation.stats);
            round_done(app, round, input_ids, generation);
        }
        Event::Cached { models } => render_cached(app, &models),
        Event::Error { failed, message } => match failed {
            Failed::Load => {
                let hint = match app.borrow().source {
                    Some((ModelSource::Hub { .. }, _)) => HUB_ERROR_HINT,
                    _ => LOAD_ERROR_HINT,
                };
                app.borrow_mut().loading = None;
                show_load_error(&message, hint);
                update_buttons(app);
            }
            Failed::Generate => {
                app.borrow_mut().running = None;
                notice(&format!("Generation failed: {message}"));
                update_buttons(app);
                render_cards(app);
            }
            Failed::Cache => notice(&message),
        },
    }
}

fn notice(text: &str) {
    set_text(&by_testid("notice"), text);
}

/// Shows the worker's WebAssembly memory next to the model status (`data-bytes`: the number).
fn show_memory(bytes: u64) {
    let memory = by_testid("model-memory");
    set_text(&memory, &format!("wasm memory {}", human_bytes(bytes)));
    let _ = memory.set_attribute("data-bytes", &bytes.to_string());
    show(&memory, true);
}

/// Shows how long a round's prompt and decoding took; the figures are also in `data-*`
/// attributes (round, candidates, prompt-tokens, prefill-s, generated-tokens, decode-steps,
/// decode-s) for benchmarks.
fn show_round_stats(round: u64, candidates: usize, stats: &GenerationStats) {
    let rate = |tokens: usize, seconds: f64| {
        if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        }
    };
    let line = format!(
        "Last round: prompt {} tokens in {:.2} s ({:.1} tok/s) · {} {}, {} tokens in {:.2} s ({:.1} tok/s, {:.1} per candidate)",
        stats.prompt_tokens,
        stats.prefill_s,
        rate(stats.prompt_tokens, stats.prefill_s),
        candidates,
        if candidates == 1 { "candidate" } else { "candidates" },
        stats.generated_tokens,
        stats.decode_s,
        rate(stats.generated_tokens, stats.decode_s),
        rate(stats.generated_tokens, stats.decode_s) / candidates.max(1) as f64,
    );
    let element = by_testid("round-stats");
    set_text(&element, &line);
    for (name, value) in [
        ("round", round.to_string()),
        ("candidates", candidates.to_string()),
        ("prompt-tokens", stats.prompt_tokens.to_string()),
        ("prefill-s", stats.prefill_s.to_string()),
        ("generated-tokens", stats.generated_tokens.to_string()),
        ("decode-steps", stats.decode_steps.to_string()),
        ("decode-s", stats.decode_s.to_string()),
    ] {
        let _ = element.set_attribute(&format!("data-{name}"), &value);
    }
}

fn round_done(app: &Shared, round: u64, input_ids: Vec<u32>, generation: Generation) {
    let stored = {
        let mut state = app.borrow_mut();
        let Some(running) = state.running.take().filter(|r| r.round == round) else {
            return;
        };
        let tokens = generation.stats.generated_tokens as f64;
        let seconds = generation.stats.prefill_s + generation.stats.decode_s;
        state.last_speed = (seconds > 0.0).then(|| tokens / seconds);
        let App { model, current, .. } = &mut *state;
        let (Some(model), Some(current)) = (model.as_ref(), current.as_mut()) else {
            return;
        };
        if let Err(e) =
            current
                .story
                .add_round(&input_ids, &running.planned, &generation.candidates, model)
        {
            drop(state);
            notice(&format!("The round could not be recorded: {e}"));
            return;
        }
        current.updated_at = timestamp_now();
        current.clone()
    };
    let app = app.clone();
    spawn_local(async move {
        save(&app, &stored).await;
        render_all(&app);
    });
}

// ---------------------------------------------------------------------------------------------
// Writing

fn write(app: &Shared, use_prompt: bool) {
    let prompt = textarea("prompt");
    let addition = if use_prompt {
        prompt.value()
    } else {
        String::new()
    };
    let plan = {
        let mut state = app.borrow_mut();
        if state.running.is_some() || state.model.is_none() {
            return;
        }
        let current = match state.current.as_mut() {
            Some(current) => {
                if !addition.is_empty() {
                    let text = format!("{}{}", current.story.text, addition);
                    current.story.edit(&text);
                }
                current
            }
            None => {
                if addition.trim().is_empty() {
                    drop(state);
                    notice("Write an opening first.");
                    return;
                }
                state.current.insert(StoredStory {
                    title: default_title(&addition),
                    updated_at: timestamp_now(),
                    story: Story::new(&addition),
                })
            }
        };
        current.updated_at = timestamp_now();
        let stored = current.clone();
        let step = stored.story.next_step();
        match state.settings.plan(step) {
            Ok(planned) => {
                let round = state.next_round;
                state.next_round += 1;
                state.running = Some(Running {
                    round,
                    planned: planned.clone(),
                    started_ms: now_ms(),
                    tokens: vec![0; planned.len()],
                });
                Ok((stored, round, planned))
            }
            Err(e) => Err(e),
        }
    };
    let (stored, round, planned) = match plan {
        Ok(plan) => plan,
        Err(e) => {
            notice(&format!("Check the manual overrides in Settings: {e}"));
            return;
        }
    };
    prompt.set_value("");
    notice("");
    render_all(app);
    let app = app.clone();
    spawn_local(async move {
        // The opening (or the writer's added words) is saved before generation starts.
        save(&app, &stored).await;
        let candidates = candidate_specs(&planned);
        send(
            &app,
            &Request::Generate {
                round,
                text: stored.story.text.clone(),
                candidates,
            },
            &JsValue::UNDEFINED,
        );
    });
}

/// The first words of an opening, as a story's default title.
fn default_title(opening: &str) -> String {
    let words: Vec<&str> = opening.split_whitespace().take(6).collect();
    let title = words.join(" ");
    if title.is_empty() {
        "Untitled story".into()
    } else {
        title
    }
}

/// Stops the round being generated: the worker is terminated (generation cannot be
/// interrupted from outside while it runs) and a new one reloads the model from the cache.
fn stop(app: &Shared) {
    let source = {
        let mut state = app.borrow_mut();
        if state.running.take().is_none() {
            return;
        }
        if let Some(worker) = state.worker.take() {
            worker.terminate();
        }
        state.source.clone()
    };
    notice("Stopped; nothing was recorded for that round.");
    start_worker(app);
    if let Some((source, attachment)) = source {
        let name = source.cache_name();
        load_model(app, source, attachment, &name);
    }
    render_cards(app);
    update_buttons(app);
}

/// Applies `change` to the open story, saves it, then shows it.
fn change_story(app: &Shared, change: impl FnOnce(&mut Story) -> crate::Result<()>) {
    let stored = {
        let state = app.borrow();
        if state.running.is_some() {
            return;
        }
        let Some(current) = state.current.as_ref() else {
            return;
        };
        let mut changed = current.clone();
        if let Err(e) = change(&mut changed.story) {
            drop(state);
            notice(&e.to_string());
            return;
        }
        changed.updated_at = timestamp_now();
        changed
    };
    let app = app.clone();
    spawn_local(async move {
        if save(&app, &stored).await {
            let saved = app.borrow().db.is_some();
            app.borrow_mut().current = Some(stored);
            if saved {
                notice("");
            }
        }
        render_all(&app);
    });
}

fn choose(app: &Shared, candidate: usize) {
    let record_id = {
        let state = app.borrow();
        let Some(current) = state.current.as_ref() else {
            return;
        };
        match current.story.pending_records().get(candidate - 1) {
            Some(record) => record.record_id.clone(),
            None => return,
        }
    };
    change_story(app, move |story| {
        story.choose(&record_id, "human").map(drop)
    });
}

/// Saves a story (and its records); shows the error and returns false when that fails.
/// Without IndexedDB (a browser that gives a cross-site iframe no storage, say) the story is
/// kept in the page only, and the writer is told so.
async fn save(app: &Shared, stored: &StoredStory) -> bool {
    let db = app.borrow().db.clone();
    let Some(db) = db else {
        notice(UNSAVED);
        return true;
    };
    match db.save_story(stored).await {
        Ok(()) => {
            remember_current(&stored.story.id);
            render_story_list(app).await;
            true
        }
        Err(e) => {
            notice(&format!("Not saved: {}", js_error(&e)));
            false
        }
    }
}

fn remember_current(story_id: &str) {
    if let Ok(Some(storage)) = window().local_storage() {
        let _ = storage.set_item(CURRENT_STORY_KEY, story_id);
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn card(index: usize) -> HtmlElement {
    by_testid(&format!("candidate-{index}"))
}

fn part(card: &HtmlElement, class: &str) -> Option<web_sys::Element> {
    card.query_selector(&format!(".{class}")).ok().flatten()
}

fn params_line(params: &crate::shared::SamplingParams) -> String {
    format!(
        "temperature {:.2} · top-k {} · top-p {:.2} · typical-p {:.2} · repetition {:.2} · max {} tokens",
        params.temperature,
        params.top_k,
        params.top_p,
        params.typical_p,
        params.repetition_penalty,
        params.max_new_tokens
    )
}

fn fill_card(card: &HtmlElement, index: usize, planned: &PlannedCandidate, text: &str, meta: &str) {
    clear(card);
    toggle_class(card, "empty", false);
    append(card, &text_el("div", "head", &format!("Candidate {index}")));
    append(
        card,
        &text_el(
            "div",
            "source",
            &policy_source(&planned.policy, planned.param_table.as_deref()),
        ),
    );
    append(
        card,
        &text_el("div", "params", &params_line(&planned.params)),
    );
    append(card, &text_el("div", "text", text));
    append(card, &text_el("div", "meta", meta));
}

fn render_cards(app: &Shared) {
    let state = app.borrow();
    for index in 1..=3 {
        let card = card(index);
        toggle_class(&card, "chosen-before", false);
        if let Some(running) = &state.running {
            match running.planned.get(index - 1) {
                Some(planned) => fill_card(&card, index, planned, "", "waiting…"),
                None => empty_card(&card),
            }
            continue;
        }
        let pending = state
            .current
            .as_ref()
            .map(|c| c.story.pending_records())
            .unwrap_or_default();
        match pending.get(index - 1) {
            Some(record) => {
                let planned = PlannedCandidate {
                    params: record.params.clone(),
                    policy: record.policy.clone(),
                    param_table: record.param_table.clone(),
                    seed: record.seed,
                };
                let speed = state
                    .last_speed
                    .map(|s| format!("{s:.1} tok/s (round) · "))
                    .unwrap_or_default();
                let finish = serde_json::to_value(record.finish_reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                fill_card(
                    &card,
                    index,
                    &planned,
                    &record.output_text,
                    &format!(
                        "{speed}{} tokens · {finish} · press {index}",
                        record.output_ids.len()
                    ),
                );
                toggle_class(&card, "chosen-before", record.chosen);
            }
            None => empty_card(&card),
        }
    }
}

fn empty_card(card: &HtmlElement) {
    clear(card);
    toggle_class(card, "empty", true);
}

fn render_story(app: &Shared) {
    let state = app.borrow();
    let (title, text) = state
        .current
        .as_ref()
        .map(|c| (c.title.clone(), c.story.text.clone()))
        .unwrap_or_default();
    set_text(&by_testid("story"), &text);
    let title_input = input("story-title");
    if document().active_element().as_ref() != Some(title_input.as_ref()) {
        title_input.set_value(&title);
    }
}

fn update_buttons(app: &Shared) {
    let state = app.borrow();
    let ready = state.model.is_some();
    let running = state.running.is_some();
    let story = state.current.as_ref().map(|c| &c.story);
    let set = |id: &str, enabled: bool| {
        let button: web_sys::HtmlButtonElement = by_testid(id).unchecked_into();
        button.set_disabled(!enabled);
    };
    set("write", ready && !running);
    set("stop", running);
    set("regenerate", ready && !running && story.is_some());
    set(
        "undo",
        !running && story.is_some_and(|s| !s.path.is_empty()),
    );
    set("edit-story", !running && story.is_some());
}

/// The current path, one line per step, with how many candidates each step had.
fn render_branches(app: &Shared) {
    let list = by_testid("branches");
    clear(&list);
    let state = app.borrow();
    let Some(current) = state.current.as_ref() else {
        return;
    };
    let story = &current.story;
    let depth = story.path.len();
    for (index, record_id) in story.path.iter().enumerate() {
        let Some(record) = story.record(record_id) else {
            continue;
        };
        let siblings = story
            .records
            .iter()
            .filter(|r| r.step == record.step && r.parent_record_id == record.parent_record_id)
            .count();
        let branches = story
            .records
            .iter()
            .filter(|r| {
                r.step == record.step
                    && r.parent_record_id == record.parent_record_id
                    && r.chosen
                    && r.record_id != record.record_id
            })
            .count();
        let mut line = format!(
            "Step {}: candidate {} of {siblings} ({})",
            record.step, record.candidate, record.policy
        );
        if branches > 0 {
            line += &format!(", {branches} other branch(es) kept");
        }
        let item = text_el("li", "", &format!("{line} "));
        // Going back keeps this step's candidates (and every later record) for a new choice.
        let back = text_el("button", "secondary", "Choose again here");
        let _ = back.set_attribute("data-testid", &format!("back-to-step-{}", record.step));
        let handle = app.clone();
        let steps_back = depth - index;
        on::<web_sys::Event>(&back, "click", move |_| {
            change_story(&handle, move |story| {
                (0..steps_back).try_for_each(|_| story.undo())
            })
        });
        append(&item, &back);
        append(&list, &item);
    }
}

fn render_all(app: &Shared) {
    render_story(app);
    render_cards(app);
    render_branches(app);
    update_buttons(app);
    render_chart(app);
}

fn render_chart(app: &Shared) {
    let state = app.borrow();
    let param: HtmlSelectElement = by_testid("chart-param").unchecked_into();
    let chosen: Vec<&CandidateRecord> = state
        .current
        .as_ref()
        .map(|c| {
            c.story
                .path
                .iter()
                .filter_map(|id| c.story.record(id))
                .collect()
        })
        .unwrap_or_default();
    chart::render(
        &by_testid("chart"),
        &state.settings.table,
        Param::from_name(&param.value()).unwrap_or(Param::Temperature),
        &chosen,
    );
}

// ---------------------------------------------------------------------------------------------
// Stories

async fn open_db(app: &Shared) {
    match Db::open().await {
        Ok(db) => {
            app.borrow_mut().db = Some(db.clone());
            let remembered = window()
                .local_storage()
                .ok()
                .flatten()
                .and_then(|s| s.get_item(CURRENT_STORY_KEY).ok().flatten());
            match db.stories().await {
                Ok((stories, errors)) => {
                    if !errors.is_empty() {
                        notice(&errors.join("; "));
                    }
                    let open = stories
                        .iter()
                        .find(|s| Some(&s.story.id) == remembered.as_ref())
                        .or(stories.first())
                        .cloned();
                    app.borrow_mut().current = open;
                }
                Err(e) => notice(&format!("Stories could not be read: {}", js_error(&e))),
            }
            render_story_list(app).await;
        }
        Err(e) => notice(&format!(
            "Stories cannot be saved in this browser (IndexedDB: {})",
            js_error(&e)
        )),
    }
    render_all(app);
}

async fn render_story_list(app: &Shared) {
    let db = app.borrow().db.clone();
    let Some(db) = db else { return };
    let Ok((stories, _)) = db.stories().await else {
        return;
    };
    let current_id = app.borrow().current.as_ref().map(|c| c.story.id.clone());
    let list = by_testid("story-list");
    clear(&list);
    for stored in stories {
        let item = el("li", "");
        toggle_class(
            &item,
            "current",
            Some(&stored.story.id) == current_id.as_ref(),
        );
        let open = text_el("button", "secondary open", &stored.title);
        open.set_title(&stored.title);
        let delete = text_el("button", "secondary", "×");
        delete.set_title("Delete this story");
        let handle = app.clone();
        let chosen = stored.clone();
        on::<web_sys::Event>(&open, "click", move |_| {
            let mut state = handle.borrow_mut();
            if state.running.is_some() {
                return;
            }
            remember_current(&chosen.story.id);
            state.current = Some(chosen.clone());
            state.last_speed = None;
            drop(state);
            render_all(&handle);
            let handle = handle.clone();
            spawn_local(async move { render_story_list(&handle).await });
        });
        let handle = app.clone();
        on::<web_sys::Event>(&delete, "click", move |_| {
            let question = format!(
                "Delete the story \"{}\" and all its candidates?",
                stored.title
            );
            if !window().confirm_with_message(&question).unwrap_or(false) {
                return;
            }
            let handle = handle.clone();
            let stored = stored.clone();
            spawn_local(async move {
                let db = handle.borrow().db.clone();
                if let Some(db) = db {
                    if let Err(e) = db.delete_story(&stored.story).await {
                        notice(&format!("Not deleted: {}", js_error(&e)));
                        return;
                    }
                }
                {
                    let mut state = handle.borrow_mut();
                    if state.current.as_ref().map(|c| &c.story.id) == Some(&stored.story.id) {
                        state.current = None;
                    }
                }
                render_story_list(&handle).await;
                render_all(&handle);
            });
        });
        append(&item, &open);
        append(&item, &delete);
        append(&list, &item);
    }
}

fn rename(app: &Shared) {
    let title = input("story-title").value();
    let stored = {
        let mut state = app.borrow_mut();
        let Some(current) = state.current.as_mut() else {
            return;
        };
        current.title = if title.trim().is_empty() {
            default_title(&current.story.text)
        } else {
            title
        };
        current.updated_at = timestamp_now();
        current.clone()
    };
    let app = app.clone();
    spawn_local(async move {
        save(&app, &stored).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Export and import

async fn export(app: &Shared) {
    let db = app.borrow().db.clone();
    let Some(db) = db else {
        notice("Nothing to export: IndexedDB is not available.");
        return;
    };
    let records = match db.records().await {
        Ok((records, _)) => records,
        Err(e) => {
            notice(&format!("Export failed: {}", js_error(&e)));
            return;
        }
    };
    let files = DatasetFiles::build(&records);
    for (name, text) in files.files() {
        let mime = if name.ends_with(".md") {
            "text/markdown"
        } else {
            "application/jsonl"
        };
        if let Err(e) = download(name, mime, text) {
            notice(&format!("Export of {name} failed: {}", js_error(&e)));
            return;
        }
    }
    notice(&format!(
        "Exported {} records and {} preference pairs.",
        records.len(),
        files.pairs
    ));
}

async fn import(app: &Shared, files: web_sys::FileList) {
    let mut incoming = vec![];
    let mut errors = vec![];
    for index in 0..files.length() {
        let Some(file) = files.get(index) else {
            continue;
        };
        match JsFuture::from(file.text()).await {
            Ok(text) => {
                let (records, bad) =
                    parse_records(&text.as_string().unwrap_or_default(), &file.name());
                incoming.extend(records);
                errors.extend(bad.iter().map(ToString::to_string));
            }
            Err(e) => errors.push(format!(
                "{}: could not be read: {}",
                file.name(),
                js_error(&e)
            )),
        }
    }
    let db = app.borrow().db.clone();
    let Some(db) = db else {
        notice("Import needs IndexedDB, which this browser does not offer.");
        return;
    };
    let (stories, _) = db.stories().await.unwrap_or_default();
    let (existing, _) = db.records().await.unwrap_or_default();
    let mut merger = Merger::new(existing);
    for record in incoming.iter().cloned() {
        merger.add(record);
    }
    let report = merger.finish();
    // Every story the imported records belong to, rebuilt from all its merged records; a story
    // already here keeps its text, title and path and gains the new records.
    let mut story_ids: Vec<&str> = incoming.iter().map(|r| r.story_id.as_str()).collect();
    story_ids.sort_unstable();
    story_ids.dedup();
    let mut saved = 0;
    for story_id in story_ids {
        let records: Vec<CandidateRecord> = report
            .records
            .iter()
            .filter(|r| r.story_id == story_id)
            .cloned()
            .collect();
        let stored = match stories.iter().find(|s| s.story.id == story_id) {
            Some(held) => {
                let mut held = held.clone();
                let mut merger = Merger::new(held.story.records.clone());
                for record in records {
                    merger.add(record);
                }
                held.story.records = merger.finish().records;
                held
            }
            None => match Story::from_records(story_id, &records) {
                Some(story) => StoredStory {
                    title: default_title(&story.text),
                    updated_at: timestamp_now(),
                    story,
                },
                None => {
                    errors.push(format!(
                        "story {story_id}: no record of its first step, so its opening is unknown; its records are kept for export only"
                    ));
                    continue;
                }
            },
        };
        if save(app, &stored).await {
            saved += 1;
        }
    }
    let report_box = by_testid("import-report");
    clear(&report_box);
    append(
        &report_box,
        &text_el(
            "p",
            "",
            &format!(
                "Imported {} records: {} new, {} already here, {} updated, {} conflicting (kept ours); {saved} stories saved. {} problem(s).",
                incoming.len(),
                report.added,
                report.duplicates,
                report.updated.len(),
                report.conflicts.len(),
                errors.len()
            ),
        ),
    );
    let list = el("ul", "report");
    for conflict in &report.conflicts {
        let line = format!(
            "record {}: differs in {}; the stored one was kept",
            conflict.record_id,
            conflict.fields.join(", ")
        );
        append(&list, &text_el("li", "", &line));
    }
    for error in &errors {
        append(&list, &text_el("li", "", error));
    }
    append(&report_box, &list);
    // Refresh the open story: it may have gained records.
    let current_id = app.borrow().current.as_ref().map(|c| c.story.id.clone());
    if let Some(id) = current_id {
        if let Ok((stories, _)) = db.stories().await {
            app.borrow_mut().current = stories.into_iter().find(|s| s.story.id == id);
        }
    }
    render_all(app);
}

// ---------------------------------------------------------------------------------------------
// Settings

fn render_settings(app: &Shared) {
    let state = app.borrow();
    for (index, policy) in state.settings.mix.policies.iter().enumerate() {
        let select: HtmlSelectElement =
            by_testid(&format!("policy-{}", index + 1)).unchecked_into();
        clear(&select);
        for option in Policy::ALL {
            let element = text_el("option", "", option.name());
            let _ = element.set_attribute("value", option.name());
            append(&select, &element);
        }
        select.set_value(policy.name());
        select.set_disabled(index >= state.settings.candidates);
    }
    let candidates: HtmlSelectElement = by_testid("candidates-per-step").unchecked_into();
    candidates.set_value(&state.settings.candidates.to_string());
    set_text(&by_testid("table-status"), &state.settings.source.label());
}

/// The number of candidates per step stored by an earlier visit, when it is a valid one.
fn stored_candidates() -> Option<usize> {
    let stored = window()
        .local_storage()
        .ok()
        .flatten()?
        .get_item(CANDIDATES_KEY)
        .ok()
        .flatten()?;
    let count = stored.parse().ok()?;
    (1..=Settings::default().mix.policies.len())
        .contains(&count)
        .then_some(count)
}

/// Takes the number of candidates per step from its menu and remembers it.
fn read_candidates(app: &Shared) {
    let select: HtmlSelectElement = by_testid("candidates-per-step").unchecked_into();
    let Ok(count) = select.value().parse::<usize>() else {
        return;
    };
    app.borrow_mut().settings.candidates = count;
    if let Ok(Some(storage)) = window().local_storage() {
        let _ = storage.set_item(CANDIDATES_KEY, &count.to_string());
    }
    render_settings(app);
}

fn read_overrides(app: &Shared) {
    let number = |id: &str| {
        let value = input(id).value();
        let value = value.trim();
        (!value.is_empty()).then(|| value.parse::<f64>().ok())
    };
    let mut state = app.borrow_mut();
    let overrides = &mut state.settings.overrides;
    let mut bad = vec![];
    let mut field = |id: &str, name: &str| match number(id) {
        None => None,
        Some(Some(v)) => Some(v),
        Some(None) => {
            bad.push(name.to_string());
            None
        }
    };
    overrides.temperature = field("override-temperature", "temperature").map(|v| v as f32);
    overrides.top_k = field("override-top-k", "top_k").map(|v| v.max(0.0) as usize);
    overrides.top_p = field("override-top-p", "top_p").map(|v| v as f32);
    overrides.max_new_tokens = field("override-max-new-tokens", "max new tokens")
        .map(|v| (v.max(1.0) as usize).min(crate::data::params::MAX_NEW_TOKENS_CAP));
    let status = if !bad.is_empty() {
        format!("Not a number: {}", bad.join(", "))
    } else if overrides.any() {
        "Overrides apply to every candidate (recorded as policy \"manual\").".into()
    } else {
        String::new()
    };
    drop(state);
    set_text(&by_testid("override-status"), &status);
}

async fn apply_table(app: &Shared) {
    let choice: HtmlSelectElement = by_testid("table-source").unchecked_into();
    let vocab_size = app.borrow().vocab_size;
    let status = by_testid("table-status");
    let result: Result<(StepTable, TableSource, Vec<String>), String> =
        match choice.value().as_str() {
            "url" => {
                let url = input("table-url").value();
                fetch_table(&url, vocab_size)
                    .await
                    .map(|(table, warnings)| (table, TableSource::Url(url), warnings))
            }
            "learned" => {
                let db = app.borrow().db.clone();
                match db {
                    Some(db) => match db.records().await {
                        Ok((records, _)) => learned_table(&records)
                            .map(|(table, chosen)| (table, TableSource::Learned(chosen), vec![]))
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(js_error(&e)),
                    },
                    None => Err("IndexedDB is not available".into()),
                }
            }
            _ => {
                let (table, warnings) = StepTable::bundled_for(vocab_size);
                Ok((
                    table,
                    TableSource::Bundled,
                    warnings.iter().map(ToString::to_string).collect(),
                ))
            }
        };
    match result {
        Ok((table, source, warnings)) => {
            let mut text = format!("Using the {}.", source.label());
            if !warnings.is_empty() {
                text += &format!(" Warnings: {}", warnings.join("; "));
            }
            set_text(&status, &text);
            let mut state = app.borrow_mut();
            state.settings.table = table;
            state.settings.source = source;
            drop(state);
            save_settings(app);
        }
        Err(e) => set_text(&status, &format!("Table not changed: {e}")),
    }
    render_chart(app);
}

/// Keeps the settings panel's choices in `localStorage` for the next visit.
fn save_settings(app: &Shared) {
    let state = app.borrow();
    let saved = SavedSettings {
        policies: state
            .settings
            .mix
            .policies
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        table: match state.settings.source {
            TableSource::Bundled => "bundled",
            TableSource::Url(_) => "url",
            TableSource::Learned(_) => "learned",
        }
        .into(),
        table_url: match &state.settings.source {
            TableSource::Url(url) => url.clone(),
            _ => input("table-url").value(),
        },
        overrides: OVERRIDE_FIELDS.iter().map(|id| input(id).value()).collect(),
    };
    if let (Ok(Some(storage)), Ok(json)) = (window().local_storage(), serde_json::to_string(&saved))
    {
        let _ = storage.set_item(SETTINGS_KEY, &json);
    }
}

/// Restores the settings saved by [`save_settings`]: policies and overrides at once, a URL or
/// learned table once a model is ready (its vocabulary bounds the table).
fn restore_settings(app: &Shared) {
    let Some(saved) = window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(SETTINGS_KEY).ok().flatten())
        .and_then(|json| serde_json::from_str::<SavedSettings>(&json).ok())
    else {
        return;
    };
    {
        let mut state = app.borrow_mut();
        for (slot, name) in state.settings.mix.policies.iter_mut().zip(&saved.policies) {
            if let Ok(policy) = name.parse::<Policy>() {
                *slot = policy;
            }
        }
        state.restore_table = saved.table != "bundled";
    }
    let table: HtmlSelectElement = by_testid("table-source").unchecked_into();
    table.set_value(&saved.table);
    input("table-url").set_value(&saved.table_url);
    for (id, value) in OVERRIDE_FIELDS.iter().zip(&saved.overrides) {
        input(id).set_value(value);
    }
    read_overrides(app);
}

async fn fetch_table(url: &str, vocab_size: usize) -> Result<(StepTable, Vec<String>), String> {
    let failed = |e: JsValue| format!("{url}: {}", js_error(&e));
    let response: web_sys::Response = JsFuture::from(window().fetch_with_str(url))
        .await
        .map_err(failed)?
        .unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: the server answered {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(failed)?)
        .await
        .map_err(failed)?
        .as_string()
        .unwrap_or_default();
    let (table, warnings) =
        StepTable::from_json(&text, url, vocab_size).map_err(|e| e.to_string())?;
    Ok((table, warnings.iter().map(ToString::to_string).collect()))
}

// ---------------------------------------------------------------------------------------------
// Wiring

fn wire(app: &Shared) {
    let handle = app.clone();
    on_click("write", move || write(&handle, true));
    let handle = app.clone();
    on_click("regenerate", move || write(&handle, false));
    let handle = app.clone();
    on_click("stop", move || stop(&handle));
    let handle = app.clone();
    on_click("undo", move || change_story(&handle, Story::undo));
    for index in 1..=3 {
        let handle = app.clone();
        on_click(&format!("candidate-{index}"), move || {
            choose(&handle, index)
        });
    }
    let handle = app.clone();
    on_click("new-story", move || {
        let mut state = handle.borrow_mut();
        if state.running.is_some() {
            return;
        }
        state.current = None;
        drop(state);
        render_all(&handle);
        let _ = textarea("prompt").focus();
        let handle = handle.clone();
        spawn_local(async move { render_story_list(&handle).await });
    });
    on::<web_sys::Event>(&input("story-title"), "change", {
        let handle = app.clone();
        move |_| rename(&handle)
    });
    on_click("edit-story", {
        let handle = app.clone();
        move || {
            let text = handle
                .borrow()
                .current
                .as_ref()
                .map(|c| c.story.text.clone())
                .unwrap_or_default();
            textarea("story-editor").set_value(&text);
            show(&by_testid("story-editor-box"), true);
        }
    });
    on_click("cancel-edit", || {
        show(&by_testid("story-editor-box"), false)
    });
    on_click("save-edit", {
        let handle = app.clone();
        move || {
            let text = textarea("story-editor").value();
            show(&by_testid("story-editor-box"), false);
            change_story(&handle, move |story| {
                story.edit(&text);
                Ok(())
            });
        }
    });
    on_click("export", {
        let handle = app.clone();
        move || {
            let handle = handle.clone();
            spawn_local(async move { export(&handle).await });
        }
    });
    on::<web_sys::Event>(&input("import"), "change", {
        let handle = app.clone();
        move |_| {
            let field = input("import");
            if let Some(files) = field.files() {
                let handle = handle.clone();
                spawn_local(async move {
                    import(&handle, files).await;
                    input("import").set_value("");
                });
            }
        }
    });
    on_click("settings-toggle", || {
        let panel = by_testid("settings");
        show(&panel, panel.hidden());
    });
    for index in 1..=3 {
        let handle = app.clone();
        on::<web_sys::Event>(
            &by_testid(&format!("policy-{index}")),
            "change",
            move |_| {
                let select: HtmlSelectElement =
                    by_testid(&format!("policy-{index}")).unchecked_into();
                if let Ok(policy) = select.value().parse::<Policy>() {
                    handle.borrow_mut().settings.mix.policies[index - 1] = policy;
                    save_settings(&handle);
                }
            },
        );
    }
    let handle = app.clone();
    on::<web_sys::Event>(&by_testid("candidates-per-step"), "change", move |_| {
        read_candidates(&handle)
    });
    on_click("table-apply", {
        let handle = app.clone();
        move || {
            let handle = handle.clone();
            spawn_local(async move { apply_table(&handle).await });
        }
    });
    for id in OVERRIDE_FIELDS {
        let handle = app.clone();
        on::<web_sys::Event>(&input(id), "input", move |_| {
            read_overrides(&handle);
            save_settings(&handle);
        });
    }
    let handle = app.clone();
    on::<web_sys::Event>(&by_testid("chart-param"), "change", move |_| {
        render_chart(&handle)
    });
    on_click("model-url-load", {
        let handle = app.clone();
        move || {
            let url = input("model-url").value();
            let url = url.trim();
            if url.is_empty() {
                return;
            }
            let name = url
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("model.gguf")
                .to_string();
            let source = ModelSource::Url {
                url: url.to_string(),
                name: name.clone(),
                demo: false,
                bytes: None,
            };
            load_model(&handle, source, JsValue::UNDEFINED, &name);
        }
    });
    on_click("hub-load", {
        let handle = app.clone();
        move || {
            let dtype: HtmlSelectElement = by_testid("hub-dtype").unchecked_into();
            let source = ModelSource::Hub {
                base_url: input("hub-base").value().trim().to_string(),
                repo: input("hub-repo").value().trim().to_string(),
                dtype: dtype.value(),
            };
            let name = source.cache_name();
            load_model(&handle, source, JsValue::UNDEFINED, &name);
        }
    });
    on::<web_sys::Event>(&input("model-file"), "change", {
        let handle = app.clone();
        move |_| {
            if let Some(file) = input("model-file").files().and_then(|f| f.get(0)) {
                load_file(&handle, file);
            }
        }
    });
    let body = document().body().expect("a body");
    on::<web_sys::DragEvent>(&body, "dragover", |event| event.prevent_default());
    on::<web_sys::DragEvent>(&body, "drop", {
        let handle = app.clone();
        move |event: web_sys::DragEvent| {
            event.prevent_default();
            if let Some(file) = event
                .data_transfer()
                .and_then(|d| d.files())
                .and_then(|f| f.get(0))
            {
                load_file(&handle, file);
            }
        }
    });
    on::<KeyboardEvent>(&document(), "keydown", {
        let handle = app.clone();
        move |event: KeyboardEvent| {
            if event.ctrl_key() || event.meta_key() || event.alt_key() {
                return;
            }
            let typing = event
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .is_some_and(|t| matches!(t.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
            if typing {
                return;
            }
            match event.key().as_str() {
                "1" => choose(&handle, 1),
                "2" => choose(&handle, 2),
                "3" => choose(&handle, 3),
                "r" => write(&handle, false),
                "u" => change_story(&handle, Story::undo),
                "Escape" => stop(&handle),
                _ => return,
            }
            event.prevent_default();
        }
    });
}

fn load_file(app: &Shared, file: web_sys::File) {
    let name = file.name();
    if app.borrow().running.is_some() {
        return;
    }
    load_model(
        app,
        ModelSource::File { name: name.clone() },
        file.into(),
        &name,
    );
}
