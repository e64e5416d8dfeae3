//! The autopilot panel: "Autopilot N steps" writes round after round and picks with a chooser
//! (the step-mean policy's candidate, one at random, always the first shown, or the picker
//! trained on the writer's choices), every pick
//! recorded as the chooser's (`chosen_by`), not the writer's. Any key or click stops it (and
//! the round being written, of which nothing is recorded); the click does nothing else.
//!
//! A click stops it as the pointer goes down, not at the click: the cards' text is replaced at
//! every token, and browsers (Firefox and Chromium alike) send no click at all when the node
//! under the pointer at the press is gone at the release, so a click while tokens stream in
//! could be lost. The click that follows such a press is swallowed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{HtmlButtonElement, HtmlElement, HtmlInputElement, HtmlSelectElement};

use super::{click, App};
use crate::autopilot::{
    round_seed, Chooser, PickerChooser, PositionChooser, RandomChooser, StepMeanChooser,
};
use crate::web::dom::{by_testid, document, input, set_text};

/// Steps one start may ask for at most.
const MAX_STEPS: u32 = 1000;
/// How long after a press that stopped a run its click is swallowed, in ms (a press without a
/// click, dragged off, must not swallow a click made later, e.g. by the keyboard).
const CLICK_AFTER_STOP_MS: f64 = 2_000.0;

/// An autopilot run in progress.
struct Run {
    chooser: Box<dyn Chooser>,
    /// Seeds the random chooser's draw at each step.
    seed: u64,
    /// Steps still to write after the round being written.
    remaining: u32,
    /// Steps picked so far.
    done: u32,
}

/// The autopilot's nodes and its run.
pub(super) struct Autopilot {
    steps: HtmlInputElement,
    chooser: HtmlSelectElement,
    button: HtmlButtonElement,
    status: HtmlElement,
    run: RefCell<Option<Run>>,
    /// When (`Date.now()`) a press of the pointer last stopped a run: its click is swallowed.
    stopped_by_press: Cell<Option<f64>>,
}

impl Autopilot {
    /// Finds the panel's nodes.
    pub(super) fn new() -> Self {
        Self {
            steps: input("autopilot-steps"),
            chooser: by_testid("autopilot-chooser").unchecked_into(),
            button: by_testid("autopilot").unchecked_into(),
            status: by_testid("autopilot-status"),
            run: RefCell::default(),
            stopped_by_press: Cell::default(),
        }
    }

    /// Installs the start button, and the page-wide press of the pointer that stops a run and
    /// swallows its click.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &self.button, |app| app.autopilot.start(app));
        // Captured before any element sees them: while a run goes, a click only stops it.
        let weak = Rc::downgrade(app);
        let stop_on_press = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if let Some(app) = weak.upgrade() {
                let stopped = app.autopilot.interrupt(&app);
                let now = js_sys::Date::now();
                app.autopilot.stopped_by_press.set(stopped.then_some(now));
            }
        });
        let weak = Rc::downgrade(app);
        let swallow_click =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                let Some(app) = weak.upgrade() else {
                    return;
                };
                let pressed = app.autopilot.stopped_by_press.take();
                let after_stop =
                    pressed.is_some_and(|at| js_sys::Date::now() - at < CLICK_AFTER_STOP_MS);
                // A click with no press (from the keyboard) stops a run too.
                if after_stop || app.autopilot.interrupt(&app) {
                    event.stop_propagation();
                    event.prevent_default();
                }
            });
        for (kind, listener) in [("pointerdown", &stop_on_press), ("click", &swallow_click)] {
            document()
                .add_event_listener_with_callback_and_bool(
                    kind,
                    listener.as_ref().unchecked_ref(),
                    true,
                )
                .expect("adding an event listener works");
        }
        // Installed once, for the page's lifetime.
        stop_on_press.forget();
        swallow_click.forget();
    }

    /// Whether a run is in progress.
    pub(super) fn running(&self) -> bool {
        self.run.borrow().is_some()
    }

    /// Starts a run of the steps asked for: the first round continues the story with the
    /// prompt's words (or opens one with them), as Write does.
    fn start(&self, app: &Rc<App>) {
        if self.running() || app.writing.running() {
            return;
        }
        let steps = match self.steps.value().trim().parse::<u32>() {
            Ok(n) if (1..=MAX_STEPS).contains(&n) => n,
            _ => {
                return set_text(
                    &self.status,
                    &format!("Steps: give a whole number from 1 to {MAX_STEPS}."),
                )
            }
        };
        let chooser: Box<dyn Chooser> = match self.chooser.value().as_str() {
            "random" => Box::new(RandomChooser),
            "position" => Box::new(PositionChooser(1)),
            "picker" => match app.picker.picker() {
                Some(picker) => Box::new(PickerChooser {
                    picker,
                    name: "picker:page".into(),
                }),
                None => return set_text(&self.status, "Train a picker first (Picker, below)."),
            },
            _ => Box::new(StepMeanChooser),
        };
        let name = chooser.name();
        *self.run.borrow_mut() = Some(Run {
            chooser,
            seed: (js_sys::Math::random() * 2f64.powi(53)) as u64,
            remaining: steps - 1,
            done: 0,
        });
        set_text(
            &self.status,
            &format!("Autopilot: 0 of {steps} steps, picking {name}. Any key or click stops it."),
        );
        self.render();
        app.writing.write(app, true);
        if !app.writing.running() {
            self.finish("Autopilot did not start: load a model and write an opening first.");
        }
    }

    /// Called when a round has been recorded: picks a candidate as the chooser (counted at
    /// once: a stop while the pick is saved still keeps it), then writes the next round unless
    /// the run is done.
    pub(super) fn round_recorded(&self, app: &Rc<App>) {
        let choice = {
            let mut run = self.run.borrow_mut();
            let Some(run) = run.as_mut() else {
                return;
            };
            let state = app.state.borrow();
            let Some(current) = state.current.as_ref() else {
                return;
            };
            let story = &current.story;
            let pending = story.pending_records();
            let seed = round_seed(run.seed, story.next_step());
            let choice = run.chooser.choose(story, &pending, seed).map(|index| {
                (
                    pending.get(index).map(|r| r.record_id.clone()),
                    run.chooser.name(),
                )
            });
            if let Ok((Some(_), name)) = &choice {
                run.done += 1;
                let total = run.done + run.remaining;
                let text = format!(
                    "Autopilot: {} of {total} steps, picking {name}. Any key or click stops it.",
                    run.done
                );
                set_text(&self.status, &text);
            }
            choice
        };
        let (record_id, name) = match choice {
            Ok((Some(record_id), name)) => (record_id, name),
            Ok((None, _)) => return self.finish("Autopilot stopped: the round has no candidates."),
            Err(e) => return self.finish(&format!("Autopilot stopped: {e}")),
        };
        app.change_story_and(
            move |story| story.choose(&record_id, &name).map(drop),
            |app| app.autopilot.picked(app),
        );
    }

    /// After a pick is saved: writes the next round, or ends the run.
    fn picked(&self, app: &Rc<App>) {
        // `Some(steps done)` when the run is over, `None` when another round is to be written.
        let finished = {
            let mut run = self.run.borrow_mut();
            let Some(run) = run.as_mut() else {
                return;
            };
            if run.remaining == 0 {
                Some(run.done)
            } else {
                run.remaining -= 1;
                None
            }
        };
        if let Some(done) = finished {
            return self.finish(&format!("Autopilot wrote {done} steps."));
        }
        app.writing.write(app, false);
        if !app.writing.running() {
            self.finish("Autopilot stopped: the next round could not start.");
        }
    }

    /// Stops a run (a key or a click): the round being written is stopped and not recorded.
    /// Returns whether a run was stopped.
    pub(super) fn interrupt(&self, app: &Rc<App>) -> bool {
        let Some(run) = self.run.borrow_mut().take() else {
            return false;
        };
        if app.writing.running() {
            app.writing.stop(app);
        }
        self.finish(&format!(
            "Autopilot stopped after {} steps; the round being written was not recorded.",
            run.done
        ));
        true
    }

    /// A run ended in a failure of its round (shown by the writing area too).
    pub(super) fn round_failed(&self) {
        if self.running() {
            self.finish("Autopilot stopped: the round failed.");
        }
    }

    fn finish(&self, message: &str) {
        self.run.borrow_mut().take();
        set_text(&self.status, message);
        self.render();
    }

    /// Shows the button as starting a run or as running.
    fn render(&self) {
        let running = self.running();
        self.button.set_text_content(Some(if running {
            "Autopilot running…"
        } else {
            "Autopilot"
        }));
        self.steps.set_disabled(running);
        self.chooser.set_disabled(running);
        let _ = self
            .status
            .set_attribute("data-running", if running { "true" } else { "false" });
    }
}
