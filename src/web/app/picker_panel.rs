//! The picker panel: trains a picker on the writer's own choices (in the worker, with
//! progress), shows its held-out evaluation, keeps it across visits (`localStorage`), gives
//! each card its chance of being picked, and serves the autopilot as a chooser.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlButtonElement, HtmlElement};

use super::{click, App};
use crate::data::records::CandidateRecord;
use crate::picker::eval::Evaluation;
use crate::picker::Picker;
use crate::web::dom::{by_testid, local_storage, set_text};
use crate::web::protocol::Request;

/// The `localStorage` key of the trained picker (its JSON).
const STORAGE_KEY: &str = "storywriter.picker";

/// The panel's nodes and the trained picker.
pub(super) struct PickerPanel {
    train: HtmlButtonElement,
    status: HtmlElement,
    evaluation: HtmlElement,
    picker: RefCell<Option<Picker>>,
    training: Cell<bool>,
}

impl PickerPanel {
    /// Finds the panel's nodes.
    pub(super) fn new() -> Self {
        Self {
            train: by_testid("picker-train").unchecked_into(),
            status: by_testid("picker-status"),
            evaluation: by_testid("picker-eval"),
            picker: RefCell::default(),
            training: Cell::new(false),
        }
    }

    /// Installs the Train button.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &self.train, |app| app.picker.start_training(app));
    }

    /// Takes back the picker saved by an earlier visit; one that cannot be read is named and
    /// left for the next training to replace.
    pub(super) fn restore(&self) {
        let Some(json) = local_storage().and_then(|s| s.get_item(STORAGE_KEY).ok().flatten())
        else {
            return set_text(&self.status, "No picker yet: train one on your choices.");
        };
        match serde_json::from_str::<Picker>(&json) {
            Ok(picker) => self.show(picker, "Picker from an earlier visit"),
            Err(e) => set_text(
                &self.status,
                &format!("The saved picker could not be read ({e}); train it again."),
            ),
        }
    }

    /// Asks the worker to train a picker on every record of the writer's stories.
    fn start_training(&self, app: &Rc<App>) {
        if self.training.get() {
            return;
        }
        let Some(db) = app.db() else {
            return set_text(
                &self.status,
                "Your stories are not stored here, so there is nothing to train on.",
            );
        };
        self.training.set(true);
        self.train.set_disabled(true);
        set_text(&self.status, "Reading your choices…");
        let app = app.clone();
        spawn_local(async move {
            let panel = &app.picker;
            match db.records().await {
                Ok((records, _)) => {
                    set_text(
                        &panel.status,
                        &format!("Training on {} candidates…", records.len()),
                    );
                    app.send(&Request::TrainPicker { records }, &JsValue::UNDEFINED);
                }
                Err(e) => panel.failed(&format!("could not read your records: {e}")),
            }
        });
    }

    /// Training progress from the worker.
    pub(super) fn progress(&self, done: f64) {
        if self.training.get() {
            set_text(
                &self.status,
                &format!("Training… {:.0}%", 100.0 * done.clamp(0.0, 1.0)),
            );
        }
    }

    /// A trained picker from the worker: kept, saved and shown; the cards get their chances.
    pub(super) fn trained(&self, app: &Rc<App>, picker: Picker) {
        self.training.set(false);
        self.train.set_disabled(false);
        if let (Some(storage), Ok(json)) = (local_storage(), serde_json::to_string(&picker)) {
            if storage.set_item(STORAGE_KEY, &json).is_err() {
                app.notice("The picker could not be saved: it lasts until the page is closed.");
            }
        }
        self.show(picker, "Trained on your choices");
        app.writing.render(app);
    }

    /// Training failed (too few stories or choices, or another error).
    pub(super) fn failed(&self, message: &str) {
        self.training.set(false);
        self.train.set_disabled(false);
        set_text(
            &self.status,
            &format!("The picker was not trained: {message}"),
        );
    }

    fn show(&self, picker: Picker, how: &str) {
        let card = &picker.card;
        set_text(
            &self.status,
            &format!(
                "{how}: {} rounds of {} ({} held out), model {}.",
                card.train.rounds + card.test.rounds,
                stories(card.train.stories + card.test.stories),
                card.test.rounds,
                card.model.name
            ),
        );
        set_text(&self.evaluation, &describe(card.test_metrics.as_ref()));
        *self.picker.borrow_mut() = Some(picker);
    }

    /// The trained picker, if any (for the autopilot).
    pub(super) fn picker(&self) -> Option<Picker> {
        self.picker.borrow().clone()
    }

    /// Each candidate's chance of being picked, in display order; `None` without a picker or
    /// for candidates of another model than it was trained on.
    pub(super) fn chances(&self, round: &[&CandidateRecord]) -> Option<Vec<f64>> {
        let picker = self.picker.borrow();
        picker.as_ref()?.probabilities(round).ok()
    }
}

/// The held-out evaluation in a line: top-1 against chance and the baselines, log loss.
fn describe(metrics: Option<&Evaluation>) -> String {
    let Some(m) = metrics else {
        return "No story was left to test it on.".into();
    };
    let baselines: Vec<String> = m
        .baselines
        .iter()
        .map(|(name, top1)| format!("{name} {:.0}%", 100.0 * top1))
        .collect();
    format!(
        "Held out ({} rounds, {}): picks your choice first in {:.0}% of rounds \
         (95% interval {:.0}–{:.0}%; chance {:.0}%); log loss {:.2} (chance {:.2}). \
         Baselines: {}.",
        m.rounds,
        stories(m.stories),
        100.0 * m.top1,
        100.0 * m.top1_ci95[0],
        100.0 * m.top1_ci95[1],
        100.0 * m.chance,
        m.log_loss,
        m.chance_log_loss,
        baselines.join(", ")
    )
}

/// "1 story", "3 stories".
fn stories(n: usize) -> String {
    if n == 1 {
        "1 story".into()
    } else {
        format!("{n} stories")
    }
}
