//! The branches panel: the current path, one line per step, with how many candidates each step
//! had and how many other branches it keeps, and a "Choose again here" button per step (one
//! delegated listener reads the step from the button).

use std::rc::Rc;

use web_sys::HtmlElement;

use super::{with_app, App};
use crate::web::dom::{append, by_testid, clear, closest, on, text_el};

/// The branches list.
pub(super) struct Branches {
    list: HtmlElement,
}

impl Branches {
    /// Finds the list.
    pub(super) fn new() -> Self {
        Self {
            list: by_testid("branches"),
        }
    }

    /// Installs the list's one listener: going back keeps the step's candidates (and every
    /// later record) for a new choice.
    pub(super) fn wire(&self, app: &Rc<App>) {
        on::<web_sys::Event>(
            &self.list,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                let step = closest(&event, "button[data-step]")
                    .and_then(|b| b.get_attribute("data-step"))
                    .and_then(|s| s.parse::<u32>().ok());
                if let Some(step) = step {
                    app.change_story(move |story| story.back_to(step));
                }
            }),
        );
    }

    /// Lists the open story's path.
    pub(super) fn render(&self, app: &App) {
        clear(&self.list);
        let state = app.state.borrow();
        let Some(current) = state.current.as_ref() else {
            return;
        };
        let story = &current.story;
        for record_id in &story.path {
            let Some(record) = story.record(record_id) else {
                continue;
            };
            let same_round = |r: &&crate::data::records::CandidateRecord| {
                r.step == record.step && r.parent_record_id == record.parent_record_id
            };
            let siblings = story.records.iter().filter(same_round).count();
            let branches = story
                .records
                .iter()
                .filter(same_round)
                .filter(|r| r.chosen && r.record_id != record.record_id)
                .count();
            let mut line = format!(
                "Step {}: candidate {} of {siblings} ({})",
                record.step, record.candidate, record.policy
            );
            if branches > 0 {
                line += &format!(", {branches} other branch(es) kept");
            }
            let item = text_el("li", "", &format!("{line} "));
            let back = text_el("button", "secondary", "Choose again here");
            let _ = back.set_attribute("data-testid", &format!("back-to-step-{}", record.step));
            let _ = back.set_attribute("data-step", &record.step.to_string());
            append(&item, &back);
            append(&self.list, &item);
        }
    }
}
