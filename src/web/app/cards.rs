//! The candidate cards: the three `article`s of `index.html` that the writing area fills (a
//! round's plan, its text as it streams in, the candidates waiting for a choice), and the
//! scrolling that brings them into view when a round starts and keeps them there while it
//! streams — on a phone, or in a 600-pixel iframe, they would otherwise start below the fold —
//! with the writing buttons above them (Stop) in view too when both fit.

use std::cell::Cell;

use web_sys::{Element, HtmlElement, ScrollBehavior, ScrollToOptions};

use crate::data::records::CandidateRecord;
use crate::data::story::PlannedCandidate;
use crate::shared::SamplingParams;
use crate::web::dom::{append, by_testid, clear, set_text, text_el, toggle_class, window};
use crate::web::settings::policy_source;

/// Room left between the cards and the window's edge when the page scrolls to them, in px.
const MARGIN_PX: f64 = 8.0;

/// How [`Cards::reveal`] scrolls.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reveal {
    /// A round starts: scroll to the cards wherever they are.
    Start,
    /// The cards grew: scroll at once by what shows them whole, unless the reader has scrolled
    /// the page since (they are then left alone until the next round).
    Follow,
}

/// The three candidate cards.
pub(super) struct Cards {
    nodes: [HtmlElement; 3],
    /// Where the last reveal of this round left the page's scroll position; `None` before a
    /// round starts and once the reader has scrolled elsewhere.
    scrolled: Cell<Option<f64>>,
}

impl Cards {
    /// Finds the cards (`candidate-1` to `candidate-3`).
    pub(super) fn new() -> Self {
        Self {
            nodes: [1, 2, 3].map(|i| by_testid(&format!("candidate-{i}"))),
            scrolled: Cell::default(),
        }
    }

    /// The card nodes, in display order.
    pub(super) fn nodes(&self) -> &[HtmlElement; 3] {
        &self.nodes
    }

    /// Shows candidate `index` (0-based): its parameters, where they came from, its text so
    /// far and a line under it (`meta`). Model output is set as text.
    pub(super) fn fill(&self, index: usize, planned: &PlannedCandidate, text: &str, meta: &str) {
        let card = &self.nodes[index];
        clear(card);
        toggle_class(card, "empty", false);
        toggle_class(card, "chosen-before", false);
        append(
            card,
            &text_el("div", "head", &format!("Candidate {}", index + 1)),
        );
        let source = policy_source(&planned.policy, planned.param_table.as_deref());
        append(card, &text_el("div", "source", &source));
        append(
            card,
            &text_el("div", "params", &params_line(&planned.params)),
        );
        append(card, &text_el("div", "text", text));
        append(card, &text_el("div", "meta", meta));
    }

    /// Shows a finished candidate waiting for a choice: its plan, its text, and a line with
    /// the round's speed (if known), its length, why it ended and its key.
    pub(super) fn fill_record(&self, index: usize, record: &CandidateRecord, speed: Option<f64>) {
        let planned = PlannedCandidate {
            params: record.params.clone(),
            policy: record.policy.clone(),
            param_table: record.param_table.clone(),
            seed: record.seed,
            design: None,
        };
        let speed = speed
            .map(|s| format!("{s:.1} tok/s (round) · "))
            .unwrap_or_default();
        let finish = serde_json::to_value(record.finish_reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // Tokens with no text of their own leave the card blank: its line says why.
        let textless = if record.wrote_no_text() {
            " · no text"
        } else {
            ""
        };
        let meta = format!(
            "{speed}{} tokens · {finish}{textless} · press {}",
            record.output_ids.len(),
            index + 1
        );
        self.fill(index, &planned, &record.output_text, &meta);
    }

    /// Adds a line under card `index`'s text (the picker's chance).
    pub(super) fn add_line(&self, index: usize, class: &str, line: &str) {
        append(&self.nodes[index], &text_el("div", class, line));
    }

    /// Marks card `index` as a candidate chosen before (on a branch walked back).
    pub(super) fn mark_chosen_before(&self, index: usize, chosen: bool) {
        toggle_class(&self.nodes[index], "chosen-before", chosen);
    }

    /// Empties card `index` (no candidate in that place).
    pub(super) fn empty(&self, index: usize) {
        let card = &self.nodes[index];
        clear(card);
        toggle_class(card, "chosen-before", false);
        toggle_class(card, "empty", true);
    }

    /// Appends streamed `text` to card `index` and sets its line under the text.
    pub(super) fn stream(&self, index: usize, text: &str, meta: Option<&str>) {
        let Some(card) = self.nodes.get(index) else {
            return;
        };
        if let Some(body) = part(card, "text") {
            let _ = body.append_with_str_1(text);
        }
        if let (Some(line), Some(meta)) = (part(card, "meta"), meta) {
            set_text(&line, meta);
        }
    }

    /// Scrolls the page (this document only, never the page embedding it) so that `above`
    /// (the writing buttons) and the first row of filled cards show whole, or from the top of
    /// `above` when they are taller than the window.
    pub(super) fn reveal(&self, above: &Element, how: Reveal) {
        let Some((top, bottom)) = self.first_row() else {
            return;
        };
        let top = top.min(above.get_bounding_client_rect().top());
        let window = window();
        let (Some(view), Ok(y)) = (
            window.inner_height().ok().and_then(|h| h.as_f64()),
            window.scroll_y(),
        ) else {
            return;
        };
        if how == Reveal::Follow
            && self
                .scrolled
                .get()
                .is_none_or(|left| (y - left).abs() >= 1.0)
        {
            // The reader scrolled: stop following until the next round.
            self.scrolled.set(None);
            return;
        }
        let delta = if top < 0.0 || top >= view {
            top - MARGIN_PX
        } else if bottom > view - MARGIN_PX {
            (bottom - view + MARGIN_PX).min(top - MARGIN_PX)
        } else {
            0.0
        };
        if delta.abs() >= 1.0 {
            // At once, never animated: no motion for readers who asked for less, and no page
            // moving under a finger about to tap.
            let options = ScrollToOptions::new();
            options.set_top(delta);
            options.set_behavior(ScrollBehavior::Instant);
            window.scroll_by_with_scroll_to_options(&options);
        }
        self.scrolled.set(Some(window.scroll_y().unwrap_or(y)));
    }

    /// The top and bottom (in the window) of the filled cards level with the first one: one
    /// card when they are stacked, all of them side by side.
    fn first_row(&self) -> Option<(f64, f64)> {
        let filled: Vec<_> = self
            .nodes
            .iter()
            .filter(|card| !card.class_list().contains("empty"))
            .map(|card| card.get_bounding_client_rect())
            .collect();
        let top = filled.first()?.top();
        let bottom = filled
            .iter()
            .filter(|rect| (rect.top() - top).abs() < 1.0)
            .map(|rect| rect.bottom())
            .fold(top, f64::max);
        Some((top, bottom))
    }
}

/// The first descendant of `card` with class `class`.
fn part(card: &HtmlElement, class: &str) -> Option<web_sys::Element> {
    card.query_selector(&format!(".{class}")).ok().flatten()
}

/// A candidate's sampling parameters in one line.
pub(super) fn params_line(params: &SamplingParams) -> String {
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
