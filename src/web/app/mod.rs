//! The page, as one component per panel: `models` (the header's status, the demo notices,
//! model sources, loading, the cache), `story_list`, `story_view` (the story by author, and its
//! counts), `token_view` (a passage's tokens, their probabilities and alternatives), `writing`
//! (the title, editor and writing buttons) with `cards` (the candidate cards, kept in view while
//! a round streams) and `round_stats` (the last round's timings), `tree_view`, `branches`,
//! `settings_panel` (settings and the chart), `transfer` (export and import) and `tabs` (other
//! tabs of the app on the same story).
//!
//! Each component holds its DOM nodes and its slice of state; what several of them read — the
//! database, the loaded model's identity and the open story — is the app's `State`. The model
//! worker's events reach the panels in one place, `App::dispatch`. Listeners are installed once
//! at start-up and hold a `Weak` of the app; the lists that are drawn again (stories, branches,
//! the tree, the story's passages, cached models) have one delegated listener each, which reads
//! ids from data attributes, so drawing a list creates no listener and nothing outlives its
//! elements. A choice, an undo or
//! an edit is written to IndexedDB first and shown after the write has committed.

mod autopilot;
mod branches;
mod cards;
mod models;
mod picker_panel;
mod round_stats;
mod settings_panel;
mod story_list;
mod story_view;
mod tabs;
mod token_view;
mod transfer;
mod tree_view;
mod writing;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{EventTarget, HtmlElement};

use crate::data::records::timestamp_now;
use crate::data::story::Story;
use crate::shared::ModelIdentity;
use crate::web::dom::{by_testid, document, on, set_text, toggle_class, window};
use crate::web::error::{Context, Error, Result};
use crate::web::idb::{Db, SaveError, StoredStory};
use crate::web::protocol::{Event, Failed, Request};
use crate::web::worker_client::WorkerClient;

use autopilot::Autopilot;
use branches::Branches;
use models::Models;
use picker_panel::PickerPanel;
use settings_panel::SettingsPanel;
use story_list::StoryList;
use story_view::StoryView;
use tabs::Tabs;
use token_view::TokenView;
use transfer::Transfer;
use tree_view::TreeView;
use writing::Writing;

/// What several panels read.
#[derive(Default)]
struct State {
    /// The stories' database (`None` when the browser gives the page no IndexedDB).
    db: Option<Db>,
    /// The loaded model's identity (recorded with its candidates); `None` until one is ready.
    model: Option<ModelIdentity>,
    /// The loaded model's context length, in tokens; `None` until one is ready.
    context_length: Option<usize>,
    /// The open story.
    current: Option<StoredStory>,
}

/// The page: the shared state, the model worker and the panels.
struct App {
    state: RefCell<State>,
    /// A story change is being saved ([`App::change_story_and`]).
    changing: Cell<bool>,
    /// The changes asked meanwhile, run in order once it is saved.
    waiting_changes: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    worker: RefCell<Option<WorkerClient>>,
    notice: HtmlElement,
    models: Models,
    stories: StoryList,
    story_view: StoryView,
    token_view: TokenView,
    writing: Writing,
    autopilot: Autopilot,
    picker: PickerPanel,
    branches: Branches,
    tree: TreeView,
    settings: SettingsPanel,
    transfer: Transfer,
    tabs: Tabs,
}

/// A listener's body run with the app while the page lives; the listener holds only a `Weak`.
fn with_app<E>(app: &Rc<App>, body: impl Fn(&Rc<App>, E) + 'static) -> impl FnMut(E) + 'static {
    let weak: Weak<App> = Rc::downgrade(app);
    move |event| {
        if let Some(app) = weak.upgrade() {
            body(&app, event);
        }
    }
}

/// Runs `body` with the app on every click of `target` (a listener installed once).
fn click(app: &Rc<App>, target: &EventTarget, body: impl Fn(&Rc<App>) + 'static) {
    on::<web_sys::Event>(target, "click", with_app(app, move |app, _| body(app)));
}

/// Starts the page.
pub fn run() {
    console_error_panic_hook::set_once();
    let app = Rc::new(App {
        state: RefCell::default(),
        changing: Cell::new(false),
        waiting_changes: RefCell::default(),
        worker: RefCell::default(),
        notice: by_testid("notice"),
        models: Models::new(),
        stories: StoryList::new(),
        story_view: StoryView::new(),
        token_view: TokenView::new(),
        writing: Writing::new(),
        autopilot: Autopilot::new(),
        picker: PickerPanel::new(),
        branches: Branches::new(),
        tree: TreeView::new(),
        settings: SettingsPanel::new(),
        transfer: Transfer::new(),
        tabs: Tabs::new(),
    });
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
    app.models.wire(&app);
    app.stories.wire(&app);
    app.story_view.wire(&app);
    app.token_view.wire(&app);
    app.writing.wire(&app);
    app.autopilot.wire(&app);
    app.picker.wire(&app);
    app.branches.wire(&app);
    app.tree.wire(&app);
    app.settings.wire(&app);
    app.transfer.wire(&app);
    app.tabs.wire(&app);
    app.start_worker();
    let weak = Rc::downgrade(&app);
    crate::web::threads::bind_setting(move || {
        if let Some(app) = weak.upgrade() {
            app.restart_worker();
        }
    });
    app.settings.restore();
    app.picker.restore();
    // The app lives as long as the page: its listeners hold only `Weak`s of it.
    std::mem::forget(Rc::clone(&app));
    spawn_local(async move {
        StoryList::open_db(&app).await;
        app.models.load_index(&app).await;
    });
}

impl App {
    /// Starts a model worker whose events go to [`App::dispatch`] and asks for the cached models.
    fn start_worker(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let on_event = move |event| {
            if let Some(app) = weak.upgrade() {
                app.dispatch(event);
            }
        };
        match WorkerClient::start(on_event) {
            Ok(worker) => {
                worker.send(&Request::ListCached, &JsValue::UNDEFINED);
                *self.worker.borrow_mut() = Some(worker);
            }
            Err(e) => self.models.show_error(
                &format!("the model worker did not start: {e}"),
                models::LOAD_ERROR_HINT,
            ),
        }
    }

    /// Stops the model worker at once (whatever it is doing); [`App::start_worker`] starts another.
    fn stop_worker(&self) {
        if let Some(worker) = self.worker.borrow_mut().take() {
            worker.terminate();
        }
    }

    /// Replaces the model worker (for another thread count) and loads the model again.
    fn restart_worker(self: &Rc<Self>) {
        self.autopilot.interrupt(self);
        self.stop_worker();
        self.writing.forget_round(self);
        self.start_worker();
        self.models.reload(self);
    }

    /// Sends a request to the model worker, with `attachment` (a `File`, or `undefined`).
    fn send(&self, request: &Request, attachment: &JsValue) {
        if let Some(worker) = &*self.worker.borrow() {
            worker.send(request, attachment);
        }
    }

    /// The one place where the model worker's events (or a message it sent that the page does
    /// not understand) reach the panels.
    fn dispatch(self: &Rc<Self>, event: Result<Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => return self.notice(&e.to_string()),
        };
        match event {
            // Consumed by the worker client.
            Event::Started => {}
            Event::Progress {
                phase,
                bytes,
                total,
            } => self.models.show_progress(phase, bytes, total),
            Event::Ready {
                identity,
                name,
                demo,
                from_cache,
                vocab_size,
                context_length,
                wasm_memory_bytes,
            } => {
                self.models.show_memory(wasm_memory_bytes);
                self.models.ready(&identity, &name, demo, from_cache);
                {
                    let mut state = self.state.borrow_mut();
                    state.model = Some(identity);
                    state.context_length = Some(context_length);
                }
                self.render_story();
                self.send(&Request::ListCached, &JsValue::UNDEFINED);
                self.writing.update_buttons(self);
                self.settings.model_ready(self, vocab_size);
            }
            Event::Token {
                round,
                candidate,
                text,
            } => self.writing.token(self, round, candidate, &text),
            Event::RoundDone {
                round,
                input_ids,
                generation,
                wasm_memory_bytes,
            } => {
                self.models.show_memory(wasm_memory_bytes);
                self.writing
                    .round_done(self, round, &input_ids, &generation);
            }
            Event::Pieces { record_id, pieces } => self.token_view.show_tokens(&record_id, pieces),
            Event::Alternatives {
                record_id,
                index,
                alternatives,
            } => self
                .token_view
                .show_alternatives(&record_id, index, &alternatives),
            Event::Cached { models } => self.models.render_cached(&models),
            Event::PickerProgress { done } => self.picker.progress(done),
            Event::PickerTrained { picker } => self.picker.trained(self, *picker),
            Event::Error { failed, message } => match failed {
                Failed::Load => {
                    self.models.load_failed(&message);
                    self.writing.update_buttons(self);
                }
                Failed::Generate => {
                    self.writing.failed(self, &message);
                    self.autopilot.round_failed();
                }
                Failed::Cache => self.notice(&message),
                Failed::Picker => self.picker.failed(&message),
                Failed::Alternatives => self.token_view.alternatives_failed(&message),
            },
        }
    }

    /// The stories' database, when the browser gives the page one.
    fn db(&self) -> Option<Db> {
        self.state.borrow().db.clone()
    }

    /// The open story's id.
    fn current_id(&self) -> Option<String> {
        let state = self.state.borrow();
        state.current.as_ref().map(|c| c.story.id.clone())
    }

    /// Shows a one-line message under the writing buttons (empty: none).
    fn notice(&self, text: &str) {
        set_text(&self.notice, text);
    }

    /// Shows the open story everywhere it appears.
    fn render_all(self: &Rc<Self>) {
        self.render_story();
        self.writing.render(self);
        self.branches.render(self);
        self.tree
            .render(self.state.borrow().current.as_ref().map(|c| &c.story));
        self.settings.render_chart(self);
    }

    /// Shows the open story's text and counts.
    fn render_story(&self) {
        let state = self.state.borrow();
        let story = state.current.as_ref().map(|c| &c.story);
        self.story_view.render(story, state.context_length);
    }

    /// Applies `change` to the open story, saves it, then shows it (unless a round is running).
    fn change_story(
        self: &Rc<Self>,
        change: impl FnOnce(&mut Story) -> crate::Result<()> + 'static,
    ) {
        self.change_story_and(change, |_| {});
    }

    /// Like [`App::change_story`], then calls `then` once the change is saved and shown.
    ///
    /// One change at a time: a change asked while another is being saved waits for it, then
    /// applies to the story that one left (not to the story before it, which a later save would
    /// put back), if that story is still the open one.
    fn change_story_and(
        self: &Rc<Self>,
        change: impl FnOnce(&mut Story) -> crate::Result<()> + 'static,
        then: impl FnOnce(&Rc<App>) + 'static,
    ) {
        if self.changing.get() {
            let (app, story) = (self.clone(), self.current_id());
            self.waiting_changes
                .borrow_mut()
                .push_back(Box::new(move || {
                    if app.current_id() == story {
                        app.change_story_and(change, then);
                    }
                }));
            return;
        }
        if self.writing.running() {
            return;
        }
        let changed = {
            let state = self.state.borrow();
            let Some(current) = state.current.as_ref() else {
                return;
            };
            let mut changed = current.clone();
            change(&mut changed.story).map(|()| changed)
        };
        let mut changed = match changed {
            Ok(changed) => changed,
            Err(e) => return self.notice(&e.to_string()),
        };
        changed.updated_at = timestamp_now();
        self.changing.set(true);
        let app = self.clone();
        spawn_local(async move {
            if app.save(&changed).await {
                let mut state = app.state.borrow_mut();
                // Unless another story was opened meanwhile.
                if let Some(current) = state
                    .current
                    .as_mut()
                    .filter(|c| c.story.id == changed.story.id)
                {
                    changed.revision = changed.revision.max(current.revision);
                    *current = changed;
                }
                let saved = state.db.is_some();
                drop(state);
                if saved {
                    app.notice("");
                }
            }
            app.render_all();
            then(&app);
            app.changing.set(false);
            // The next waiting change that starts a save (one refused or dropped does not).
            while !app.changing.get() {
                let next = app.waiting_changes.borrow_mut().pop_front();
                match next {
                    Some(next) => next(),
                    None => break,
                }
            }
        });
    }

    /// Saves a story (and its records); shows the error and returns false when that fails.
    /// Without IndexedDB (a browser that gives a cross-site iframe no storage, say) the story
    /// is kept in the page only, and the writer is told so.
    async fn save(self: &Rc<Self>, stored: &StoredStory) -> bool {
        let Some(db) = self.db() else {
            self.notice(UNSAVED);
            return true;
        };
        match db.save_story(stored).await {
            Ok(revision) => {
                if let Some(current) = self.state.borrow_mut().current.as_mut() {
                    if current.story.id == stored.story.id {
                        current.revision = current.revision.max(revision);
                    }
                }
                self.tabs.announce(&stored.story.id, revision);
                story_list::remember_current(&stored.story.id);
                self.stories.refresh(self).await;
                true
            }
            Err(e @ SaveError::ChangedElsewhere { .. }) => {
                // The other page's version replaces this one's (not in the middle of a round).
                let fresh = story_list::read_story(self, &db, &stored.story.id).await;
                if let Some(fresh) = fresh.filter(|_| !self.writing.running()) {
                    self.state.borrow_mut().current = Some(fresh);
                    self.render_all();
                }
                self.notice(&format!(
                    "Not saved: {e}. This page now shows the story as it was saved there."
                ));
                false
            }
            Err(e) => {
                self.notice(&format!("Not saved: {e}"));
                false
            }
        }
    }
}

/// The notice while stories cannot be saved.
const UNSAVED: &str = "Not saved: this browser gives the page no storage here (IndexedDB), so the \
story lives in this page only, until it is closed.";

/// Fetches `url` as text; fails on a network error or an error status.
async fn fetch_text(url: &str) -> Result<String> {
    let response: web_sys::Response = JsFuture::from(window().fetch_with_str(url))
        .await
        .context(url)?
        .unchecked_into();
    if !response.ok() {
        return Err(Error::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    let text = JsFuture::from(response.text().context(url)?)
        .await
        .context(url)?;
    Ok(text.as_string().unwrap_or_default())
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
