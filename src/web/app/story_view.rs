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
//! A click on a model passage (or Enter on it) opens its tokens under the story: each token's
//! text (asked of the worker, `Request::Decode`) with its probability from the record's
//! stored log-probabilities (`data-prob`, and as the token's label for screen readers).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Element, HtmlElement, KeyboardEvent};

use super::cards::params_line;
use super::{with_app, App};
use crate::data::authorship::{passages, Author};
use crate::data::counts::{counts, Counts, Fill};
use crate::data::story::Story;
use crate::web::dom::{append, by_testid, clear, closest, document, on, set_text, show, text_el};
use crate::web::protocol::Request;
use crate::web::settings::policy_source;

/// The story's text and its counts.
pub(super) struct StoryView {
    story: HtmlElement,
    counts: HtmlElement,
    warning: HtmlElement,
    tokens_box: HtmlElement,
    tokens: HtmlElement,
    /// The record whose tokens were asked for, its log-probabilities and, once shown, their
    /// texts.
    asked: RefCell<Option<Asked>>,
}

/// A record whose tokens are shown (or asked for).
struct Asked {
    record_id: String,
    logprobs: Vec<f32>,
    pieces: Vec<String>,
}

impl StoryView {
    /// Finds the story, its counts line and the window's warning.
    pub(super) fn new() -> Self {
        Self {
            story: by_testid("story"),
            counts: by_testid("story-counts"),
            warning: by_testid("context-warning"),
            tokens_box: by_testid("tokens-box"),
            tokens: by_testid("tokens"),
            asked: RefCell::default(),
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
        on::<web_sys::Event>(
            &self.tokens,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                app.story_view.reroll(app, &event)
            }),
        );
        on::<KeyboardEvent>(
            &self.tokens,
            "keydown",
            with_app(app, |app, event: KeyboardEvent| {
                if event.key() == "Enter" {
                    app.story_view.reroll(app, &event);
                }
            }),
        );
    }

    /// Rerolls from the token `event` is on (one whose tokens before it decode exactly).
    fn reroll(&self, app: &Rc<App>, event: &web_sys::Event) {
        let Some(at) = closest(event, "[data-index]")
            .and_then(|t| t.get_attribute("data-index"))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return;
        };
        let (record_id, kept_text) = {
            let asked = self.asked.borrow();
            let Some(asked) = asked.as_ref() else {
                return;
            };
            let kept: String = asked.pieces.iter().take(at).map(String::as_str).collect();
            (asked.record_id.clone(), kept)
        };
        show(&self.tokens_box, false);
        app.writing.reroll(app, &record_id, at, &kept_text);
    }

    /// Asks the worker for the tokens of the model passage `event` is on.
    fn open_tokens(&self, app: &App, event: &web_sys::Event) {
        let Some(id) =
            closest(event, "[data-author=model]").and_then(|p| p.get_attribute("data-record"))
        else {
            return;
        };
        let ids = {
            let state = app.state.borrow();
            let Some(record) = state.current.as_ref().and_then(|c| c.story.record(&id)) else {
                return;
            };
            self.asked.replace(Some(Asked {
                record_id: id.clone(),
                logprobs: record.logprobs.clone(),
                pieces: vec![],
            }));
            record.output_ids.clone()
        };
        app.send(&Request::Decode { record_id: id, ids }, &JsValue::UNDEFINED);
    }

    /// Shows the tokens the worker decoded for the record asked last: each as text, with its
    /// probability; a click (or Enter) on one rerolls from it, where the tokens before it
    /// decode to exactly their text (none split a character).
    pub(super) fn show_tokens(&self, record_id: &str, pieces: Vec<String>) {
        let mut asked = self.asked.borrow_mut();
        let Some(asked) = asked.as_mut().filter(|a| a.record_id == record_id) else {
            return;
        };
        clear(&self.tokens);
        let _ = self.tokens.set_attribute("data-record", record_id);
        let exact = pieces
            .iter()
            .position(|p| p.contains('\u{fffd}'))
            .unwrap_or(pieces.len());
        for (at, (piece, logprob)) in pieces.iter().zip(&asked.logprobs).enumerate() {
            let prob = logprob.exp();
            let token = text_el("span", "token", piece);
            set_attributes(
                &token,
                &[
                    ("data-testid", "token"),
                    ("data-prob", &format!("{prob:.4}")),
                    ("data-label", &format!("{:.0}%: ", 100.0 * prob)),
                    ("data-band", &band(prob).to_string()),
                    ("title", &format!("{:.1}%", 100.0 * prob)),
                ],
            );
            if at <= exact {
                set_attributes(
                    &token,
                    &[
                        ("data-index", &at.to_string()),
                        ("role", "button"),
                        ("tabindex", "0"),
                        ("aria-description", "reroll from here"),
                    ],
                );
            }
            append(&self.tokens, &token);
        }
        asked.pieces = pieces;
        show(&self.tokens_box, true);
    }

    /// Moves the focus among the passages for `key`; false when the key is not one of them.
    fn move_focus(&self, key: &str) -> bool {
        let all: Vec<Element> = std::iter::successors(self.story.first_element_child(), |p| {
            p.next_element_sibling()
        })
        .collect();
        let Some(last) = all.len().checked_sub(1) else {
            return false;
        };
        let active = document().active_element();
        let at = all.iter().position(|p| Some(p) == active.as_ref());
        let to = match (key, at) {
            ("ArrowRight" | "ArrowDown", None) | ("Home", _) => 0,
            ("ArrowRight" | "ArrowDown", Some(i)) => (i + 1).min(last),
            ("ArrowLeft" | "ArrowUp", Some(i)) => i.saturating_sub(1),
            ("ArrowLeft" | "ArrowUp", None) | ("End", _) => last,
            _ => return false,
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

/// A probability's band for the style sheet: 0 (below 10%) to 3 (50% and more).
fn band(prob: f32) -> u8 {
    match prob {
        p if p >= 0.5 => 3,
        p if p >= 0.25 => 2,
        p if p >= 0.1 => 1,
        _ => 0,
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

/// Sets each `(name, value)` attribute of `element`.
fn set_attributes(element: &Element, attributes: &[(&str, &str)]) {
    for (name, value) in attributes {
        let _ = element.set_attribute(name, value);
    }
}
