//! The models panel: the header's status line (one line, cut short; a tap shows it whole) and
//! loading progress, the demo notices (the page's, collapsible and dismissed for good, and the
//! embedded view's one line for visitors), the model sources (the list next to the page, a URL,
//! a local file or a dropped one, the hub loader) and the models cached in the Origin Private
//! File System.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlElement, HtmlInputElement, HtmlProgressElement, HtmlSelectElement};

use super::{click, fetch_text, with_app, App};
use crate::engine::memory_budget::human_bytes;
use crate::shared::ModelIdentity;
use crate::web::dom::{
    append, by_testid, clear, closest, document, el, input, local_storage, now_ms, on, set_text,
    show, text_el, toggle_class,
};
use crate::web::error::Context;
use crate::web::protocol::{CachedModel, ModelSource, Phase, Request};

/// What to tell the writer when a model does not load.
pub(super) const LOAD_ERROR_HINT: &str =
    "What to do: check that the file is a BLOOM model in GGUF format \
(made by `storywriter quantize` or llama.cpp) and complete; download it again, or pick another \
source under \"Models\".";

/// What to tell the writer when the hub loader fails.
const HUB_ERROR_HINT: &str = "What to do: check the hub address and the repository name (a BLOOM \
repository with config.json, tokenizer.json and model.safetensors; the server must answer range \
requests, and allow this page with CORS), try again, or pick another source under \"Models\".";

/// Where the page finds the models next to it (written by the serve command).
const INDEX_URL: &str = "models/index.json";

/// `localStorage` key set once the writer has dismissed the demo notice.
const DEMO_HINT_DISMISSED_KEY: &str = "storywriter.demo-hint-dismissed";

/// `models/index.json`.
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

/// Progress of the current loading phase.
struct Loading {
    phase: Phase,
    started_ms: f64,
}

/// The models panel's nodes and state.
pub(super) struct Models {
    status: HtmlElement,
    status_line: HtmlElement,
    progress: HtmlProgressElement,
    progress_text: HtmlElement,
    memory: HtmlElement,
    error: HtmlElement,
    demo_hint: HtmlElement,
    embed_notice: HtmlElement,
    sources: HtmlElement,
    cached: HtmlElement,
    url: HtmlInputElement,
    file: HtmlInputElement,
    /// The last model source and its attachment, to restart the worker after a stop.
    source: RefCell<Option<(ModelSource, JsValue)>>,
    loading: RefCell<Option<Loading>>,
}

impl Models {
    /// Finds the panel's nodes.
    pub(super) fn new() -> Self {
        Self {
            status: by_testid("model-status"),
            status_line: by_testid("model-status-line"),
            progress: by_testid("model-progress").unchecked_into(),
            progress_text: by_testid("model-progress-text"),
            memory: by_testid("model-memory"),
            error: by_testid("model-error"),
            demo_hint: by_testid("demo-hint"),
            embed_notice: by_testid("embed-notice"),
            sources: by_testid("model-sources"),
            cached: by_testid("cached-models"),
            url: input("model-url"),
            file: input("model-file"),
            source: RefCell::default(),
            loading: RefCell::default(),
        }
    }

    /// Installs the listeners of the status line, the demo notice, the sources, a file dropped
    /// on the page and (one, delegated) the cached models' buttons.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &self.status_line, |app| app.models.toggle_status());
        on::<web_sys::KeyboardEvent>(
            &self.status_line,
            "keydown",
            with_app(app, |app, event: web_sys::KeyboardEvent| {
                if matches!(event.key().as_str(), "Enter" | " ") {
                    event.prevent_default();
                    app.models.toggle_status();
                }
            }),
        );
        click(app, &by_testid("demo-hint-dismiss"), |app| {
            if let Some(storage) = local_storage() {
                let _ = storage.set_item(DEMO_HINT_DISMISSED_KEY, "1");
            }
            show(&app.models.demo_hint, false);
        });
        click(app, &by_testid("model-url-load"), |app| {
            let url = app.models.url.value();
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
            app.models.load(app, source, JsValue::UNDEFINED, &name);
        });
        click(app, &by_testid("hub-load"), |app| {
            let dtype: HtmlSelectElement = by_testid("hub-dtype").unchecked_into();
            let source = ModelSource::Hub {
                base_url: input("hub-base").value().trim().to_string(),
                repo: input("hub-repo").value().trim().to_string(),
                dtype: dtype.value(),
            };
            let name = source.cache_name();
            app.models.load(app, source, JsValue::UNDEFINED, &name);
        });
        on::<web_sys::Event>(
            &self.file,
            "change",
            with_app(app, |app, _| {
                if let Some(file) = app.models.file.files().and_then(|f| f.get(0)) {
                    app.models.load_file(app, file);
                }
            }),
        );
        let body = document().body().expect("a body");
        on::<web_sys::DragEvent>(&body, "dragover", |event| event.prevent_default());
        on::<web_sys::DragEvent>(
            &body,
            "drop",
            with_app(app, |app, event: web_sys::DragEvent| {
                event.prevent_default();
                let files = event.data_transfer().and_then(|d| d.files());
                if let Some(file) = files.and_then(|f| f.get(0)) {
                    app.models.load_file(app, file);
                }
            }),
        );
        on::<web_sys::Event>(
            &self.cached,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                let Some((action, name)) = cached_action(&event) else {
                    return;
                };
                if action == "load" {
                    let source = ModelSource::Cached { name: name.clone() };
                    app.models.load(app, source, JsValue::UNDEFINED, &name);
                } else {
                    app.send(&Request::DeleteCached { name }, &JsValue::UNDEFINED);
                }
            }),
        );
    }

    /// Loads the first model of `models/index.json`; without the list, opens the sources.
    pub(super) async fn load_index(&self, app: &Rc<App>) {
        let index = async {
            let text = fetch_text(INDEX_URL).await?;
            serde_json::from_str::<ModelIndex>(&text).context(INDEX_URL)
        };
        match index.await.map(|index| index.models.into_iter().next()) {
            Ok(Some(entry)) => {
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
                self.load(app, source, JsValue::UNDEFINED, &label);
            }
            Ok(None) => self.set_status("No model next to the page: load one under \"Models\"."),
            Err(e) => {
                self.set_status(&format!(
                    "No model list next to the page ({e}): load a model under \"Models\" (URL, local file or a cached one)."
                ));
                self.open_sources();
            }
        }
    }

    /// Asks the worker to load `source` (with `attachment`, a `File` or `undefined`), shown as
    /// `label` while it loads.
    fn load(&self, app: &Rc<App>, source: ModelSource, attachment: JsValue, label: &str) {
        app.state.borrow_mut().model = None;
        self.loading.take();
        *self.source.borrow_mut() = Some((source.clone(), attachment.clone()));
        show(&self.error, false);
        self.show_demo_notices(false);
        self.set_status(&format!("Loading {label}…"));
        app.writing.update_buttons(app);
        app.send(&Request::LoadModel { source }, &attachment);
    }

    /// Loads the last model again (in a new worker, after a stop).
    pub(super) fn reload(&self, app: &Rc<App>) {
        let source = self.source.borrow().clone();
        if let Some((source, attachment)) = source {
            let name = source.cache_name();
            self.load(app, source, attachment, &name);
        }
    }

    /// Loads a local file (picked or dropped), unless a round is running.
    fn load_file(&self, app: &Rc<App>, file: web_sys::File) {
        if app.writing.running() {
            return;
        }
        let name = file.name();
        self.load(
            app,
            ModelSource::File { name: name.clone() },
            file.into(),
            &name,
        );
    }

    /// Sets the status line's text; the whole of it is also its tooltip, as the line may be cut.
    fn set_status(&self, text: &str) {
        set_text(&self.status, text);
        let _ = self.status_line.set_attribute("title", text);
    }

    /// Lets the header's status line wrap to show all of its text, or cuts it to one line again.
    fn toggle_status(&self) {
        let expanded = self.status_line.get_attribute("aria-expanded").as_deref() != Some("true");
        let _ = self
            .status_line
            .set_attribute("aria-expanded", if expanded { "true" } else { "false" });
        if let Some(header) = self.status_line.parent_element() {
            toggle_class(&header, "expanded", expanded);
        }
    }

    /// Shows the notices of a demo model (or hides them): the page's, unless the writer
    /// dismissed it before, and the embedded view's (the style sheet shows one or the other).
    fn show_demo_notices(&self, demo: bool) {
        let dismissed = local_storage()
            .and_then(|s| s.get_item(DEMO_HINT_DISMISSED_KEY).ok().flatten())
            .is_some();
        show(&self.demo_hint, demo && !dismissed);
        show(&self.embed_notice, demo);
    }

    fn open_sources(&self) {
        let _ = self.sources.set_attribute("open", "");
    }

    /// Shows a model that is ready to write.
    pub(super) fn ready(&self, identity: &ModelIdentity, name: &str, demo: bool, from_cache: bool) {
        self.loading.take();
        show(&self.progress, false);
        set_text(&self.progress_text, "");
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
        self.set_status(&format!("Model ready: {name} ({details}{origin})"));
        self.show_demo_notices(demo);
    }

    /// The model did not load: the error, with a hint that fits its source.
    pub(super) fn load_failed(&self, message: &str) {
        let hint = match &*self.source.borrow() {
            Some((ModelSource::Hub { .. }, _)) => HUB_ERROR_HINT,
            _ => LOAD_ERROR_HINT,
        };
        self.loading.take();
        self.show_error(message, hint);
    }

    /// Shows why no model is loaded, and what to do.
    pub(super) fn show_error(&self, message: &str, hint: &str) {
        set_text(
            &self.error,
            &format!("The model could not be loaded: {message}\n{hint}"),
        );
        show(&self.error, true);
        self.set_status("No model loaded (see the error below)");
        show(&self.progress, false);
        set_text(&self.progress_text, "");
        self.open_sources();
    }

    /// Shows the progress of a loading phase, with its speed.
    pub(super) fn show_progress(&self, phase: Phase, bytes: u64, total: Option<u64>) {
        let started_ms = {
            let mut loading = self.loading.borrow_mut();
            match &*loading {
                Some(loading) if loading.phase == phase => loading.started_ms,
                _ => {
                    let started_ms = now_ms();
                    *loading = Some(Loading { phase, started_ms });
                    started_ms
                }
            }
        };
        let progress = &self.progress;
        show(progress, true);
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
        set_text(&self.progress_text, &text);
    }

    /// Shows the worker's WebAssembly memory next to the model status (`data-bytes`: the
    /// number; `data-page-bytes`: the page's own WebAssembly memory, where its stories live).
    pub(super) fn show_memory(&self, bytes: u64) {
        set_text(&self.memory, &format!("wasm memory {}", human_bytes(bytes)));
        let _ = self.memory.set_attribute("data-bytes", &bytes.to_string());
        let page_bytes = wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .map_or(0, |memory| {
                memory
                    .buffer()
                    .unchecked_into::<js_sys::ArrayBuffer>()
                    .byte_length()
            });
        let _ = (self.memory).set_attribute("data-page-bytes", &page_bytes.to_string());
        show(&self.memory, true);
    }

    /// Lists the cached models, each with Load and Delete buttons (handled by the list's one
    /// listener, through `data-action` and `data-name`).
    pub(super) fn render_cached(&self, models: &[CachedModel]) {
        let list = &self.cached;
        clear(list);
        if models.is_empty() {
            append(list, &text_el("li", "muted", "No cached models yet."));
        }
        for model in models {
            let item = el("li", "");
            let label = format!("{} ({}) ", model.name, human_bytes(model.bytes));
            append(&item, &text_el("span", "", &label));
            let load = text_el("button", "secondary", "Load");
            let delete = text_el("button", "secondary", "Delete");
            let _ = delete.set_attribute("data-testid", &format!("delete-cached-{}", model.name));
            for (button, action) in [(&load, "load"), (&delete, "delete")] {
                let _ = button.set_attribute("data-action", action);
                let _ = button.set_attribute("data-name", &model.name);
                append(&item, button);
            }
            append(list, &item);
        }
    }
}

/// The action (`load` or `delete`) and model name of the cached-model button a click hit.
fn cached_action(event: &web_sys::Event) -> Option<(String, String)> {
    let button = closest(event, "button[data-action]")?;
    Some((
        button.get_attribute("data-action")?,
        button.get_attribute("data-name")?,
    ))
}
