//! The writing area: the story's title, the hand editor, the prompt and the writing
//! buttons (with their keys), and what the candidate cards (`cards.rs`) show of the round being
//! written or decided.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    HtmlButtonElement, HtmlElement, HtmlInputElement, HtmlTextAreaElement, KeyboardEvent,
};

use super::cards::{Cards, Reveal};
use super::round_stats::RoundStats;
use super::{click, default_title, with_app, App};
use crate::data::records::{new_seed, timestamp_now};
use crate::data::story::{PlannedCandidate, Story, TokenPrefix};
use crate::data::text_field::edited_text;
use crate::engine::generate::Generation;
use crate::session::candidate_specs;
use crate::web::dom::{by_testid, document, input, now_ms, on, show, textarea, window};
use crate::web::idb::StoredStory;
use crate::web::protocol::Request;

/// A round being generated.
struct Running {
    round: u64,
    planned: Vec<PlannedCandidate>,
    started_ms: f64,
    tokens: Vec<usize>,
    /// The record a "reroll from here" round continues part of.
    rerolled_from: Option<String>,
}

/// The writing area's nodes and state.
pub(super) struct Writing {
    title: HtmlInputElement,
    prompt: HtmlTextAreaElement,
    editor_box: HtmlElement,
    editor: HtmlTextAreaElement,
    write: HtmlButtonElement,
    stop: HtmlButtonElement,
    regenerate: HtmlButtonElement,
    undo: HtmlButtonElement,
    edit: HtmlButtonElement,
    cards: Cards,
    round_stats: RoundStats,
    running: RefCell<Option<Running>>,
    next_round: Cell<u64>,
    /// Whether the cards are to be followed at the next frame (streamed tokens since).
    follow_pending: Cell<bool>,
    /// The pending save of a title being typed (a timeout's handle).
    title_timer: Cell<Option<i32>>,
}

/// How long typing in the title field pauses before the title is saved (it is also saved when
/// the field is left), so a title typed and never left is not lost on reload.
const TITLE_SAVE_DELAY_MS: i32 = 700;

fn button(id: &str) -> HtmlButtonElement {
    by_testid(id).unchecked_into()
}

impl Writing {
    /// Finds the writing area's nodes.
    pub(super) fn new() -> Self {
        Self {
            title: input("story-title"),
            prompt: textarea("prompt"),
            editor_box: by_testid("story-editor-box"),
            editor: textarea("story-editor"),
            write: button("write"),
            stop: button("stop"),
            regenerate: button("regenerate"),
            undo: button("undo"),
            edit: button("edit-story"),
            cards: Cards::new(),
            round_stats: RoundStats::new(),
            running: RefCell::default(),
            next_round: Cell::new(1),
            follow_pending: Cell::default(),
            title_timer: Cell::default(),
        }
    }

    /// Installs the listeners of the buttons, cards, title, editor and keys.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &self.write, |app| app.writing.write(app, true));
        click(app, &self.regenerate, |app| app.writing.write(app, false));
        click(app, &self.stop, |app| app.writing.stop(app));
        click(app, &self.undo, |app| app.change_story(Story::undo));
        for (index, card) in self.cards.nodes().iter().enumerate() {
            click(app, card, move |app| app.writing.choose(app, index + 1));
        }
        on::<web_sys::Event>(
            &self.title,
            "change",
            with_app(app, |app, _| app.writing.rename(app, None)),
        );
        on::<web_sys::Event>(
            &self.title,
            "input",
            with_app(app, |app, _| app.writing.rename_soon(app)),
        );
        click(app, &self.edit, |app| {
            let writing = &app.writing;
            let text = app
                .state
                .borrow()
                .current
                .as_ref()
                .map(|c| c.story.text.clone());
            writing.editor.set_value(&text.unwrap_or_default());
            show(&writing.editor_box, true);
        });
        click(app, &by_testid("cancel-edit"), |app| {
            show(&app.writing.editor_box, false)
        });
        click(app, &by_testid("save-edit"), |app| {
            let typed = app.writing.editor.value();
            show(&app.writing.editor_box, false);
            app.change_story(move |story| {
                // The text field turned the model's `\r`s into `\n`s: only what the writer
                // changed is changed.
                let text = edited_text(&story.text, &typed);
                // Pending candidates left for a hand edit are rejected, all of them; the edit
                // is recorded on the last picked candidate.
                story.reject_all();
                story.edit_after_pick(&text);
                Ok(())
            });
        });
        on::<KeyboardEvent>(
            &document(),
            "keydown",
            with_app(app, |app, event| key(app, &event)),
        );
    }

    /// Whether a round is being generated.
    pub(super) fn running(&self) -> bool {
        self.running.borrow().is_some()
    }

    /// Forgets the speed of the last round (another story is opened).
    pub(super) fn forget_speed(&self) {
        self.round_stats.forget_speed();
    }

    /// Moves the focus to the prompt.
    pub(super) fn focus_prompt(&self) {
        let _ = self.prompt.focus();
    }

    /// Starts a round: with the prompt's words added to the story (or opening a new one), or,
    /// for `r` and Regenerate, for the story as it is.
    pub(super) fn write(&self, app: &Rc<App>, use_prompt: bool) {
        if self.running() || app.state.borrow().model.is_none() {
            return;
        }
        let addition = if use_prompt {
            self.prompt.value()
        } else {
            String::new()
        };
        let stored = {
            let mut state = app.state.borrow_mut();
            let current = match state.current.as_mut() {
                Some(current) => {
                    // A new round while one waits for a pick (r, or words added) rejects all
                    // of its candidates; added words are an edit after the last pick.
                    current.story.reject_all();
                    if !addition.is_empty() {
                        let text = format!("{}{}", current.story.text, addition);
                        current.story.edit_after_pick(&text);
                    }
                    current
                }
                None => {
                    if addition.trim().is_empty() {
                        drop(state);
                        return app.notice("Write an opening first.");
                    }
                    state.current.insert(StoredStory {
                        title: default_title(&addition),
                        updated_at: timestamp_now(),
                        story: Story::new(&addition),
                        revision: 0,
                        saved_by: String::new(),
                    })
                }
            };
            current.updated_at = timestamp_now();
            current.clone()
        };
        let planned = match app.settings.plan(stored.story.next_step()) {
            Ok(planned) => planned,
            Err(e) => return app.notice(&format!("Check the manual overrides in Settings: {e}")),
        };
        let known = stored.story.token_prefix();
        self.start(app, stored, planned, known, None);
    }

    /// Rerolls from token `kept` of record `record_id`: the story goes back to that record's
    /// round, keeps the record's input and its first `kept` tokens (`kept_text`), and a round of
    /// candidates with the record's policy and parameters (new seeds) continues them, its
    /// records marked `rerolled_from` the record.
    pub(super) fn reroll(&self, app: &Rc<App>, record_id: &str, kept: usize, kept_text: &str) {
        if self.running() || app.state.borrow().model.is_none() {
            return;
        }
        let prepared = {
            let mut state = app.state.borrow_mut();
            let Some(current) = state.current.as_mut() else {
                return;
            };
            let Some(record) = current.story.record(record_id).cloned() else {
                return;
            };
            if kept > record.output_ids.len() {
                return;
            }
            if let Err(e) = current.story.go_to(record_id, false) {
                drop(state);
                return app.notice(&e.to_string());
            }
            let text = format!("{}{kept_text}", record.input_text);
            current.story.edit(&text);
            current.updated_at = timestamp_now();
            let known = TokenPrefix {
                text_len: text.len(),
                ids: (record.input_ids)
                    .followed_by(&record.output_ids[..kept])
                    .to_vec(),
            };
            (current.clone(), record, known)
        };
        let (stored, record, known) = prepared;
        let count = app.settings.plan(record.step).map_or(1, |p| p.len());
        let first_seed = new_seed();
        let planned = (0..count)
            .map(|i| PlannedCandidate {
                params: record.params.clone(),
                policy: record.policy.clone(),
                param_table: record.param_table.clone(),
                seed: (first_seed + i as u64) & ((1 << 53) - 1),
                design: None,
            })
            .collect();
        self.start(app, stored, planned, Some(known), Some(record.record_id));
    }

    /// Starts a round of `planned` candidates continuing `stored`'s text (whose beginning's ids
    /// are `known`): saves the story first, then asks the worker.
    fn start(
        &self,
        app: &Rc<App>,
        stored: StoredStory,
        planned: Vec<PlannedCandidate>,
        known: Option<TokenPrefix>,
        rerolled_from: Option<String>,
    ) {
        let round = self.next_round.get();
        self.next_round.set(round + 1);
        *self.running.borrow_mut() = Some(Running {
            round,
            tokens: vec![0; planned.len()],
            planned: planned.clone(),
            started_ms: now_ms(),
            rerolled_from,
        });
        self.prompt.set_value("");
        app.notice("");
        app.render_all();
        self.reveal_cards(Reveal::Start);
        let app = app.clone();
        spawn_local(async move {
            // The opening (or the writer's added words) is saved before generation starts.
            app.save(&stored).await;
            // Stopped while it was saved: the worker need not start it.
            if app.writing.running.borrow().as_ref().map(|r| r.round) != Some(round) {
                return;
            }
            let request = Request::Generate {
                round,
                text: stored.story.text.clone(),
                known,
                candidates: candidate_specs(&planned),
            };
            app.send(&request, &JsValue::UNDEFINED);
        });
    }

    /// Stops the round being generated: the worker ends it at its next step and keeps the model
    /// and the story's cache; nothing of the round is recorded.
    pub(super) fn stop(&self, app: &Rc<App>) {
        let Some(running) = self.running.borrow_mut().take() else {
            return;
        };
        // The worker ends the round at its next step and keeps the model and its caches; the
        // round's last event is then ignored (it is no longer running).
        app.send(
            &Request::Stop {
                round: running.round,
            },
            &JsValue::UNDEFINED,
        );
        app.notice("Stopped; nothing was recorded for that round.");
        self.render_cards(app);
        self.update_buttons(app);
    }

    /// Forgets the round being written (its worker was replaced).
    pub(super) fn forget_round(&self, app: &Rc<App>) {
        if self.running.borrow_mut().take().is_some() {
            self.render_cards(app);
            self.update_buttons(app);
        }
    }

    /// Takes candidate `index` (1-based) of the round waiting for a choice.
    fn choose(&self, app: &Rc<App>, index: usize) {
        let record_id = {
            let state = app.state.borrow();
            let Some(current) = state.current.as_ref() else {
                return;
            };
            match current.story.pending_records().get(index - 1) {
                Some(record) => record.record_id.clone(),
                None => return,
            }
        };
        app.change_story(move |story| {
            // Asked twice before the first was saved (a key pressed twice): chosen already.
            if story.path.last() == Some(&record_id) {
                return Ok(());
            }
            story.choose(&record_id, "human").map(drop)
        });
    }

    /// Saves the title field once typing pauses for [`TITLE_SAVE_DELAY_MS`], as the title of
    /// the story open now (not of another one opened meanwhile).
    fn rename_soon(&self, app: &Rc<App>) {
        self.cancel_title_save();
        let story = app.current_id();
        let app = Rc::downgrade(app);
        let save = Closure::once_into_js(move || {
            if let Some(app) = app.upgrade() {
                app.writing.rename(&app, story.as_deref());
            }
        });
        let timer = window().set_timeout_with_callback_and_timeout_and_arguments_0(
            save.unchecked_ref(),
            TITLE_SAVE_DELAY_MS,
        );
        self.title_timer.set(timer.ok());
    }

    /// Forgets a pending save of the title.
    fn cancel_title_save(&self) {
        if let Some(timer) = self.title_timer.take() {
            window().clear_timeout_with_handle(timer);
        }
    }

    /// Saves the title field as the open story's title (its first words when emptied), when it
    /// changed and the open story is `story` (any, for `None`).
    fn rename(&self, app: &Rc<App>, story: Option<&str>) {
        self.cancel_title_save();
        let title = self.title.value();
        let stored = {
            let mut state = app.state.borrow_mut();
            let Some(current) = state.current.as_mut() else {
                return;
            };
            if story.is_some_and(|id| id != current.story.id) {
                return;
            }
            let title = if title.trim().is_empty() {
                default_title(&current.story.text)
            } else {
                title
            };
            if title == current.title {
                return;
            }
            current.title = title;
            current.updated_at = timestamp_now();
            current.clone()
        };
        let app = app.clone();
        spawn_local(async move {
            app.save(&stored).await;
        });
    }

    /// Shows a token of the running round on its card, with the candidate's speed; the page
    /// follows the cards once a frame, however many tokens came in it (each scroll check
    /// lays out the page, whose tree and branches grow with the story).
    pub(super) fn token(&self, app: &Rc<App>, round: u64, candidate: usize, text: &str) {
        let speed = {
            let mut running = self.running.borrow_mut();
            let Some(running) = running.as_mut().filter(|r| r.round == round) else {
                return;
            };
            let Some(count) = running.tokens.get_mut(candidate) else {
                return;
            };
            *count += 1;
            let seconds = (now_ms() - running.started_ms) / 1000.0;
            (seconds > 0.0).then(|| *count as f64 / seconds)
        };
        let meta = speed.map(|speed| format!("{speed:.1} tok/s · generating…"));
        self.cards.stream(candidate, text, meta.as_deref());
        if !self.follow_pending.replace(true) {
            let app = Rc::downgrade(app);
            let follow = Closure::once_into_js(move || {
                if let Some(app) = app.upgrade() {
                    app.writing.follow_pending.set(false);
                    app.writing.reveal_cards(Reveal::Follow);
                }
            });
            if window()
                .request_animation_frame(follow.unchecked_ref())
                .is_err()
            {
                self.follow_pending.set(false);
            }
        }
    }

    /// Records a finished round in the open story, saves it and shows its candidates.
    pub(super) fn round_done(
        &self,
        app: &Rc<App>,
        round: u64,
        input_ids: &[u32],
        generation: &Generation,
    ) {
        let stats = &generation.stats;
        self.round_stats
            .show(round, generation.candidates.len(), stats);
        let Some(running) = self.running.take().filter(|r| r.round == round) else {
            return;
        };
        self.round_stats.round_finished(stats);
        let stored = {
            let mut state = app.state.borrow_mut();
            let super::State { model, current, .. } = &mut *state;
            let (Some(model), Some(current)) = (model.as_ref(), current.as_mut()) else {
                return;
            };
            let first = current.story.records.len();
            let added =
                current
                    .story
                    .add_round(input_ids, &running.planned, &generation.candidates, model);
            if let Err(e) = added {
                drop(state);
                return app.notice(&format!("The round could not be recorded: {e}"));
            }
            for record in &mut current.story.records[first..] {
                record.rerolled_from.clone_from(&running.rerolled_from);
            }
            current.updated_at = timestamp_now();
            current.clone()
        };
        let app = app.clone();
        spawn_local(async move {
            app.save(&stored).await;
            app.render_all();
            app.writing.reveal_cards(Reveal::Follow);
            app.autopilot.round_recorded(&app);
        });
    }

    /// The running round failed in the worker.
    pub(super) fn failed(&self, app: &Rc<App>, message: &str) {
        self.running.take();
        app.notice(&format!("Generation failed: {message}"));
        self.update_buttons(app);
        self.render_cards(app);
    }

    /// Shows the open story's title (unless the writer is typing one), the cards and the
    /// buttons.
    pub(super) fn render(&self, app: &Rc<App>) {
        let title = app
            .state
            .borrow()
            .current
            .as_ref()
            .map(|c| c.title.clone())
            .unwrap_or_default();
        if document().active_element().as_ref() != Some(self.title.as_ref()) {
            self.title.set_value(&title);
        }
        self.render_cards(app);
        self.update_buttons(app);
    }

    /// Scrolls the cards into view with the writing buttons (their row) above them.
    fn reveal_cards(&self, how: Reveal) {
        if let Some(buttons) = self.stop.parent_element() {
            self.cards.reveal(&buttons, how);
        }
    }

    /// Enables the buttons that can act now.
    pub(super) fn update_buttons(&self, app: &App) {
        let state = app.state.borrow();
        let ready = state.model.is_some();
        let running = self.running();
        let story = state.current.as_ref().map(|c| &c.story);
        let set = |button: &HtmlButtonElement, enabled: bool| button.set_disabled(!enabled);
        set(&self.write, ready && !running);
        set(&self.stop, running);
        set(&self.regenerate, ready && !running && story.is_some());
        set(
            &self.undo,
            !running && story.is_some_and(|s| !s.path.is_empty()),
        );
        set(&self.edit, !running && story.is_some());
    }

    /// The cards: the running round's plan, or the candidates waiting for a choice (those
    /// chosen before marked).
    fn render_cards(&self, app: &App) {
        let state = app.state.borrow();
        let running = self.running.borrow();
        let pending = state
            .current
            .as_ref()
            .map(|c| c.story.pending_records())
            .unwrap_or_default();
        let chances = app.picker.chances(&pending);
        let cards = &self.cards;
        for index in 0..cards.nodes().len() {
            if let Some(running) = &*running {
                match running.planned.get(index) {
                    Some(planned) => cards.fill(index, planned, "", "waiting…"),
                    None => cards.empty(index),
                }
                continue;
            }
            let Some(record) = pending.get(index) else {
                cards.empty(index);
                continue;
            };
            cards.fill_record(index, record, self.round_stats.last_speed());
            if let Some(chance) = chances.as_ref().and_then(|c| c.get(index)) {
                let line = format!("Picker: {:.0}% chance you pick this", 100.0 * chance);
                cards.add_line(index, "chance", &line);
            }
            cards.mark_chosen_before(index, record.chosen);
        }
    }
}

/// The keys: 1, 2, 3 choose, r regenerates, u undoes, Escape stops (not while typing); while
/// the autopilot runs, any key only stops it.
fn key(app: &Rc<App>, event: &KeyboardEvent) {
    if app.autopilot.interrupt(app) {
        event.prevent_default();
        return;
    }
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
    let writing = &app.writing;
    match event.key().as_str() {
        "1" => writing.choose(app, 1),
        "2" => writing.choose(app, 2),
        "3" => writing.choose(app, 3),
        "r" => writing.write(app, false),
        "u" => app.change_story(Story::undo),
        "Escape" => writing.stop(app),
        _ => return,
    }
    event.prevent_default();
}
