//! The story as the writer reads it: its text cut into passages by who wrote them (the writer,
//! or a picked candidate, see [`crate::data::authorship`]), and the counts under it (words,
//! tokens, steps, time spent, the share of the model's window, see [`crate::data::counts`]).
//!
//! Each passage is a `span` with `data-author` (`writer` or `model`); a model passage carries
//! its step, policy and parameters in `data-info`, shown on hover or focus, and every passage a
//! `data-label` that the style sheet gives screen readers as the passage's alternative text
//! (`content: "" / attr(data-label)`), so the story's text content stays the story. With the
//! focus on the story, the arrow keys move it from passage to passage (one listener).
//!
//! A click on a model passage (or Enter on it) opens its tokens under the story
//! (`token_view`).

use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{HtmlElement, KeyboardEvent};

use super::cards::params_line;
use super::{with_app, App};
use crate::data::authorship::{passages, Author};
use crate::data::counts::{counts, Counts, Fill};
use crate::data::story::Story;
use crate::web::dom::{
    append, arrow_target, by_testid, children, clear, closest, document, on, set_attributes,
    set_text, show, text_el,
};
use crate::web::settings::policy_source;

/// The story's text and its counts.
pub(super) struct StoryView {
    story: HtmlElement,
    counts: HtmlElement,
    warning: HtmlElement,
}

impl StoryView {
    /// Finds the story, its counts line and the window's warning.
    pub(super) fn new() -> Self {
        Self {
            story: by_testid("story"),
            counts: by_testid("story-counts"),
            warning: by_testid("context-warning"),
        }
    }

    /// Installs the story's one key listener: Left and Right (Up and Down too) move the focus
    /// to the previous or next passage, Home and End to the first or last.
    pub(super) fn wire(&self, app: &Rc<App>) {
        on::<KeyboardEvent>(
            &self.story,
            "keydown",
            with_app(app, |app, event: KeyboardEvent| {
                let key = event.key();
                if key == "Enter" {
                    app.story_view.open_tokens(app, &event);
                } else if app.story_view.move_focus(&key) {
                    event.prevent_default();
                }
            }),
        );
        on::<web_sys::Event>(
            &self.story,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                app.story_view.open_tokens(app, &event)
            }),
        );
    }

    /// Opens the tokens of the model passage `event` is on.
    fn open_tokens(&self, app: &App, event: &web_sys::Event) {
        if let Some(id) =
            closest(event, "[data-author=model]").and_then(|p| p.get_attribute("data-record"))
        {
            app.token_view.open(app, &id);
        }
    }

    /// Moves the focus among the passages for `key`; false when the key is not one of them.
    fn move_focus(&self, key: &str) -> bool {
        let all = children(&self.story);
        let active = document().active_element();
        let at = all.iter().position(|p| Some(p) == active.as_ref());
        let Some(to) = arrow_target(key, at, all.len()) else {
            return false;
        };
        if let Some(passage) = all[to].dyn_ref::<HtmlElement>() {
            let _ = passage.focus();
        }
        true
    }

    /// Shows `story` (none: an empty page) and its counts for a model of `context` tokens
    /// (`None` before a model is ready: the window is then left out).
    pub(super) fn render(&self, story: Option<&Story>, context: Option<usize>) {
        clear(&self.story);
        let Some(story) = story else {
            set_text(&self.counts, "");
            show(&self.warning, false);
            return;
        };
        for passage in passages(story) {
            let text = &story.text[passage.start..passage.end];
            let span = text_el("span", "passage", text);
            let _ = span.set_attribute("data-testid", "passage");
            let _ = span.set_attribute("tabindex", "-1");
            let record = match &passage.author {
                Author::Writer => None,
                Author::Model(id) => story.record(id),
            };
            match record {
                Some(record) => {
                    let source = policy_source(&record.policy, record.param_table.as_deref());
                    let info = format!(
                        "Step {} · candidate {} · {source} · {}",
                        record.step,
                        record.candidate,
                        params_line(&record.params)
                    );
                    set_attributes(
                        &span,
                        &[
                            ("data-author", "model"),
                            ("data-record", &record.record_id),
                            ("data-step", &record.step.to_string()),
                            ("data-info", &info),
                            ("data-label", &format!("Model, step {}: ", record.step)),
                        ],
                    );
                }
                None => set_attributes(
                    &span,
                    &[("data-author", "writer"), ("data-label", "Your words: ")],
                ),
            }
            append(&self.story, &span);
        }
        self.render_counts(&counts(story, context.unwrap_or(0)), context.is_some());
    }

    /// Writes the counts line (its figures also in `data-*` attributes) and the window's
    /// warning.
    fn render_counts(&self, counts: &Counts, with_window: bool) {
        let minutes = counts.time_ms as f64 / 60_000.0;
        let mut line = format!(
            "{} {} · {}{} tokens · {} {} · {} spent",
            counts.words,
            plural(counts.words, "word", "words"),
            counts.tokens,
            if counts.untokenized_tail { "+" } else { "" },
            counts.steps,
            plural(counts.steps, "step", "steps"),
            if minutes < 1.0 {
                "under a minute".to_string()
            } else {
                format!("{minutes:.0} min")
            },
        );
        if with_window {
            line += &format!(
                " · window {:.0}% of {} tokens",
                100.0 * counts.share(),
                counts.context
            );
        }
        set_text(&self.counts, &line);
        let fill = match counts.fill {
            Fill::Fits => "fits",
            Fill::NearlyFull => "nearly-full",
            Fill::Sliding => "sliding",
        };
        set_attributes(
            &self.counts,
            &[
                ("data-words", &counts.words.to_string()),
                ("data-tokens", &counts.tokens.to_string()),
                ("data-steps", &counts.steps.to_string()),
                ("data-time-ms", &counts.time_ms.to_string()),
                ("data-window", &counts.window.to_string()),
                ("data-context", &counts.context.to_string()),
                ("data-fill", if with_window { fill } else { "" }),
            ],
        );
        let warning = match counts.fill {
            _ if !with_window => None,
            Fill::Fits => None,
            Fill::NearlyFull => Some(
                "The story nearly fills the model's window: from about the next round on, its \
                 oldest words will no longer reach the model."
                    .to_string(),
            ),
            Fill::Sliding => Some(format!(
                "The model no longer sees the story's first {} tokens: it reads the last {} of \
                 them.",
                counts.dropped, counts.window
            )),
        };
        show(&self.warning, warning.is_some());
        set_text(&self.warning, &warning.unwrap_or_default());
    }
}

/// `one` or `many` for `n`.
fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}
