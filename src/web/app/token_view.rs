//! A picked passage's tokens, under the story: each token's text (asked of the worker,
//! `Request::Decode`) with the probability the model gave it when it wrote it, from the
//! record's stored log-probabilities (`data-prob`, and the token's label for screen readers).
//!
//! The tokens are one listbox with a single tab stop: the arrow keys (Home, End) move the
//! selection and the focus from token to token, a click selects. The selected token shows,
//! beside its stored probability, the model's most likely tokens at its place, computed on
//! demand by the worker (`Request::Alternatives`) without the sampling settings. Enter, or
//! "Reroll from here", rerolls from the selected token: new candidates with the same policy
//! continue the tokens before it (those before it must decode exactly: none split a
//! character).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlButtonElement, HtmlElement, KeyboardEvent};

use super::{with_app, App};
use crate::data::shared_input::SharedIds;
use crate::engine::alternatives::Alternative;
use crate::web::dom::{
    append, arrow_target, by_testid, children, clear, closest, on, set_attributes, set_text, show,
    text_el,
};
use crate::web::protocol::Request;

/// How many alternatives a selected token shows.
const SHOWN_ALTERNATIVES: usize = 5;

/// The token view's nodes and the record shown.
pub(super) struct TokenView {
    tokens_box: HtmlElement,
    tokens: HtmlElement,
    detail: HtmlElement,
    chosen: HtmlElement,
    alternatives: HtmlElement,
    status: HtmlElement,
    reroll_here: HtmlButtonElement,
    /// The record whose tokens are shown (or asked for).
    asked: RefCell<Option<Asked>>,
}

/// A record whose tokens are shown (or asked for).
struct Asked {
    record_id: String,
    /// The ids the model saw before the record's first token.
    input_ids: SharedIds,
    output_ids: Vec<u32>,
    logprobs: Vec<f32>,
    /// The text of each output id, once the worker has decoded them.
    pieces: Vec<String>,
    /// The tokens from the first that does not decode exactly on cannot be rerolled from.
    exact: usize,
    /// The selected token.
    selected: Option<usize>,
}

impl TokenView {
    /// Finds the token view's nodes.
    pub(super) fn new() -> Self {
        Self {
            tokens_box: by_testid("tokens-box"),
            tokens: by_testid("tokens"),
            detail: by_testid("token-detail"),
            chosen: by_testid("token-chosen"),
            alternatives: by_testid("alternatives"),
            status: by_testid("alternatives-status"),
            reroll_here: by_testid("reroll-here").unchecked_into(),
            asked: RefCell::default(),
        }
    }

    /// Installs the listeners: a click selects a token, the focus arriving on one (Tab, or a
    /// script) selects it, the arrow keys move the selection, Enter and the button reroll.
    pub(super) fn wire(&self, app: &Rc<App>) {
        let token_at = |event: &web_sys::Event| {
            closest(event, "[data-position]")
                .and_then(|t| t.get_attribute("data-position"))
                .and_then(|i| i.parse::<usize>().ok())
        };
        for kind in ["click", "focusin"] {
            on::<web_sys::Event>(
                &self.tokens,
                kind,
                with_app(app, move |app, event: web_sys::Event| {
                    if let Some(at) = token_at(&event) {
                        app.token_view.select(app, at);
                    }
                }),
            );
        }
        on::<KeyboardEvent>(
            &self.tokens,
            "keydown",
            with_app(app, |app, event: KeyboardEvent| {
                if event.key() == "Enter" {
                    app.token_view.reroll(app);
                } else if app.token_view.move_selection(app, &event.key()) {
                    event.prevent_default();
                }
            }),
        );
        on::<web_sys::Event>(
            &self.reroll_here,
            "click",
            with_app(app, |app, _| app.token_view.reroll(app)),
        );
    }

    /// Asks the worker for the texts of record `record_id`'s tokens (shown by
    /// [`Self::show_tokens`]).
    pub(super) fn open(&self, app: &App, record_id: &str) {
        let ids = {
            let state = app.state.borrow();
            let Some(record) = state
                .current
                .as_ref()
                .and_then(|c| c.story.record(record_id))
            else {
                return;
            };
            self.asked.replace(Some(Asked {
                record_id: record_id.to_string(),
                input_ids: record.input_ids.clone(),
                output_ids: record.output_ids.clone(),
                logprobs: record.logprobs.clone(),
                pieces: vec![],
                exact: 0,
                selected: None,
            }));
            record.output_ids.clone()
        };
        let record_id = record_id.to_string();
        app.send(&Request::Decode { record_id, ids }, &JsValue::UNDEFINED);
    }

    /// Shows the tokens the worker decoded for the record asked last, each with its stored
    /// probability; the first token is the list's tab stop until one is selected.
    pub(super) fn show_tokens(&self, record_id: &str, pieces: Vec<String>) {
        let mut asked = self.asked.borrow_mut();
        let Some(asked) = asked.as_mut().filter(|a| a.record_id == record_id) else {
            return;
        };
        clear(&self.tokens);
        let _ = self.tokens.set_attribute("data-record", record_id);
        asked.exact = pieces
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
                    ("data-position", &at.to_string()),
                    ("data-prob", &format!("{prob:.4}")),
                    ("data-label", &format!("{:.0}%: ", 100.0 * prob)),
                    ("data-band", &band(prob).to_string()),
                    ("title", &format!("{:.1}%", 100.0 * prob)),
                    ("role", "option"),
                    ("aria-selected", "false"),
                    ("tabindex", if at == 0 { "0" } else { "-1" }),
                ],
            );
            if at <= asked.exact {
                // Rerolling from it keeps exactly the text before it.
                let _ = token.set_attribute("data-index", &at.to_string());
            }
            append(&self.tokens, &token);
        }
        asked.pieces = pieces;
        asked.selected = None;
        show(&self.detail, false);
        show(&self.tokens_box, true);
    }

    /// Moves the selection for `key` (arrows, Home, End); false when the key is not one of them.
    fn move_selection(&self, app: &App, key: &str) -> bool {
        let (selected, count) = match &*self.asked.borrow() {
            Some(asked) => (asked.selected, asked.pieces.len()),
            None => return false,
        };
        let Some(to) = arrow_target(key, selected, count) else {
            return false;
        };
        self.select(app, to);
        true
    }

    /// Selects token `at`: it becomes the list's tab stop and takes the focus, its stored
    /// probability shows, and the worker is asked for the alternatives at its place.
    fn select(&self, app: &App, at: usize) {
        let (request, token) = {
            let mut asked = self.asked.borrow_mut();
            let Some(asked) = asked.as_mut().filter(|a| at < a.pieces.len()) else {
                return;
            };
            if asked.selected == Some(at) {
                return;
            }
            asked.selected = Some(at);
            let elements = children(&self.tokens);
            for (i, token) in elements.iter().enumerate() {
                let _ =
                    token.set_attribute("aria-selected", if i == at { "true" } else { "false" });
                let _ = token.set_attribute("tabindex", if i == at { "0" } else { "-1" });
            }
            let prob = asked.logprobs.get(at).map_or(f32::NAN, |l| l.exp());
            set_text(
                &self.chosen,
                &format!(
                    "Token {} of {}: “{}”, {:.1}% when the model wrote it (stored with the record).",
                    at + 1,
                    asked.pieces.len(),
                    asked.pieces[at],
                    100.0 * prob
                ),
            );
            let _ = self
                .chosen
                .set_attribute("data-prob", &format!("{prob:.4}"));
            clear(&self.alternatives);
            set_text(&self.status, "Asking the model…");
            self.reroll_here.set_disabled(at > asked.exact);
            show(&self.detail, true);
            let request = Request::Alternatives {
                record_id: asked.record_id.clone(),
                index: at,
                ids: asked
                    .input_ids
                    .followed_by(&asked.output_ids[..at])
                    .to_vec(),
                top: SHOWN_ALTERNATIVES,
            };
            (request, elements.get(at).cloned())
        };
        // Focusing it runs the focus listener, which finds it selected already.
        if let Some(token) = token.and_then(|t| t.dyn_into::<HtmlElement>().ok()) {
            let _ = token.focus();
        }
        app.send(&request, &JsValue::UNDEFINED);
    }

    /// Shows the alternatives the worker found at token `index` of `record_id`, when that
    /// token is still the selected one; the token written there is marked among them.
    pub(super) fn show_alternatives(&self, record_id: &str, index: usize, found: &[Alternative]) {
        let asked = self.asked.borrow();
        let Some(asked) = asked
            .as_ref()
            .filter(|a| a.record_id == record_id && a.selected == Some(index))
        else {
            return;
        };
        let written = asked.output_ids.get(index).copied();
        clear(&self.alternatives);
        for alternative in found {
            let chosen = Some(alternative.id) == written;
            let item = text_el("li", "", "");
            set_attributes(
                &item,
                &[
                    ("data-testid", "alternative"),
                    ("data-id", &alternative.id.to_string()),
                    ("data-prob", &format!("{:.4}", alternative.prob)),
                    ("data-chosen", if chosen { "true" } else { "false" }),
                ],
            );
            append(&item, &text_el("span", "text", &alternative.text));
            let note = if chosen { " — the token written" } else { "" };
            let line = format!(" {:.1}%{note}", 100.0 * alternative.prob);
            append(&item, &text_el("span", "", &line));
            append(&self.alternatives, &item);
        }
        let among = found.iter().any(|a| Some(a.id) == written);
        set_text(
            &self.status,
            if among {
                ""
            } else {
                "The token written is not among these: the sampling settings let a less likely \
                 one through."
            },
        );
    }

    /// Shows why the alternatives could not be found.
    pub(super) fn alternatives_failed(&self, message: &str) {
        set_text(&self.status, &format!("No alternatives: {message}"));
    }

    /// Rerolls from the selected token (when the tokens before it decode exactly).
    fn reroll(&self, app: &Rc<App>) {
        let Some((record_id, at, kept_text)) = self.asked.borrow().as_ref().and_then(|asked| {
            let at = asked.selected.filter(|&at| at <= asked.exact)?;
            let kept: String = asked.pieces.iter().take(at).map(String::as_str).collect();
            Some((asked.record_id.clone(), at, kept))
        }) else {
            return;
        };
        self.asked.replace(None);
        show(&self.tokens_box, false);
        app.writing.reroll(app, &record_id, at, &kept_text);
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
