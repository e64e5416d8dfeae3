//! The tree panel: the story's rounds and their candidates as an ARIA tree (see
//! [`crate::data::tree`]), drawn once per change of the story (never per token). Every item
//! is an `li` with `data-kind` (`round` or `candidate`) and `data-record` (the round's first
//! record, or the candidate's); candidates carry `data-outcome` and the current path
//! `data-current`. One delegated listener per event reads them: a click or Enter continues from
//! the item (a round waits for a choice again; a candidate is taken), the arrow keys move (up
//! and down: siblings, left: parent, right: first child), Space or the fold marker folds.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement, KeyboardEvent};

use super::{with_app, App};
use crate::data::story::Story;
use crate::data::tree::{outcome, Outcome, Round, Tree};
use crate::web::dom::{append, by_testid, clear, closest, document, el, on, set_text};

/// Characters of a candidate's text shown in its item.
const EXCERPT_CHARS: usize = 60;

/// The tree and the items the writer folded.
pub(super) struct TreeView {
    root: HtmlElement,
    /// `kind:record` of the folded items (kept while the page lives, across redraws).
    folded: RefCell<HashSet<String>>,
    /// What the tree drawn last shows ([`drawn_state`]): an unchanged story is not redrawn.
    drawn: std::cell::Cell<Option<u64>>,
    /// The items drawn last, by `kind:record`, reused by the next draw.
    items: RefCell<HashMap<String, Item>>,
}

impl TreeView {
    /// Finds the tree.
    pub(super) fn new() -> Self {
        Self {
            root: by_testid("tree"),
            folded: RefCell::default(),
            drawn: std::cell::Cell::default(),
            items: RefCell::default(),
        }
    }

    /// Installs the tree's click and key listeners (one each, for every item).
    pub(super) fn wire(&self, app: &Rc<App>) {
        on::<web_sys::Event>(
            &self.root,
            "click",
            with_app(app, |app, event: web_sys::Event| {
                let Some(item) = closest(&event, "li[role=treeitem]") else {
                    return;
                };
                if closest(&event, ".fold").is_some() {
                    app.tree.fold(&item);
                } else {
                    continue_from(app, &item);
                }
            }),
        );
        on::<KeyboardEvent>(
            &self.root,
            "keydown",
            with_app(app, |app, event: KeyboardEvent| {
                let Some(item) = closest(&event, "li[role=treeitem]") else {
                    return;
                };
                let tree = &app.tree;
                let to = match event.key().as_str() {
                    "ArrowDown" => item.next_element_sibling(),
                    "ArrowUp" => item.previous_element_sibling(),
                    "ArrowLeft" => item
                        .parent_element()
                        .and_then(|group| group.closest("li[role=treeitem]").ok().flatten()),
                    "ArrowRight" => {
                        if item.get_attribute("aria-expanded").as_deref() == Some("false") {
                            tree.fold(&item);
                        }
                        first_child(&item)
                    }
                    "Enter" => {
                        continue_from(app, &item);
                        None
                    }
                    " " => {
                        tree.fold(&item);
                        None
                    }
                    _ => return,
                };
                event.prevent_default();
                if let Some(to) = to {
                    focus(&to);
                }
            }),
        );
    }

    /// Folds or unfolds `item` (when it has children).
    fn fold(&self, item: &Element) {
        let Some(expanded) = item.get_attribute("aria-expanded") else {
            return;
        };
        let open = expanded == "false";
        let _ = item.set_attribute("aria-expanded", if open { "true" } else { "false" });
        let mut folded = self.folded.borrow_mut();
        if open {
            folded.remove(&key(item));
        } else {
            folded.insert(key(item));
        }
    }

    /// Draws the open story's tree, changing only the items whose round, candidate or place
    /// changed (a long story's tree has thousands); the focus stays on the item it was on.
    pub(super) fn render(&self, story: Option<&Story>) {
        // Three renders a round: only a story whose tree changed is drawn again.
        let state = drawn_state(story);
        if self.drawn.replace(Some(state)) == Some(state) {
            return;
        }
        let focused = document()
            .active_element()
            .filter(|active| self.root.contains(Some(active.as_ref())))
            .map(|active| key(&active));
        // Items are kept by record id: another story's are not reused, and go below.
        let kept = self.items.take();
        let Some(story) = story else {
            clear(&self.root);
            return;
        };
        let tree = Tree::new(story);
        let draw = Draw {
            story,
            tree: &tree,
            folded: &self.folded.borrow(),
            kept: RefCell::new(kept),
            drawn: RefCell::default(),
            last_on_path: RefCell::default(),
        };
        draw.rounds(&self.root, None);
        for (_, gone) in draw.kept.take() {
            gone.item.remove();
        }
        self.items.replace(draw.drawn.take());
        // The tree's one tab stop: the item focused before, else the current path's last one.
        clear_tab_stops(&self.root);
        let before = focused
            .as_deref()
            .and_then(|key| self.root.query_selector(&item_selector(key)).ok().flatten());
        let target = before
            .or_else(|| draw.last_on_path.take().map(Into::into))
            .or_else(|| self.root.first_element_child());
        if let Some(target) = target.and_then(|t| t.dyn_into::<HtmlElement>().ok()) {
            target.set_tab_index(0);
            if focused.is_some() && document().active_element().as_ref() != Some(target.as_ref()) {
                let _ = target.focus();
            }
        }
    }
}

/// An item on the page and what it shows, kept from one draw to the next.
struct Item {
    item: HtmlElement,
    label: HtmlElement,
    /// The list of its children, when it has any.
    group: Option<HtmlElement>,
    /// The attributes set last and their values.
    shown: Vec<(&'static str, String)>,
    label_text: String,
}

impl Item {
    /// A new item of `kind` for `record`.
    fn new(kind: &str, record: &str) -> Self {
        let item = el("li", kind);
        for (name, value) in [
            ("role", "treeitem"),
            ("data-testid", "tree-node"),
            ("data-kind", kind),
            ("data-record", record),
            ("tabindex", "-1"),
        ] {
            let _ = item.set_attribute(name, value);
        }
        let line = el("span", "line");
        let fold = el("span", "fold");
        let _ = fold.set_attribute("aria-hidden", "true");
        let label = el("span", "label");
        append(&line, &fold);
        append(&line, &label);
        append(&item, &line);
        Item {
            item,
            label,
            group: None,
            shown: vec![],
            label_text: String::new(),
        }
    }

    /// Sets attribute `name` to `value` unless it already is.
    fn set(&mut self, name: &'static str, value: &str) {
        match self.shown.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) if old == value => {}
            Some((_, old)) => {
                let _ = self.item.set_attribute(name, value);
                *old = value.to_string();
            }
            None => {
                let _ = self.item.set_attribute(name, value);
                self.shown.push((name, value.to_string()));
            }
        }
    }

    /// Sets the label's text unless it already is `text`.
    fn set_label(&mut self, text: String) {
        if self.label_text != text {
            set_text(&self.label, &text);
            self.label_text = text;
        }
    }
}

/// What drawing one story's tree reads, and the items it keeps or makes.
struct Draw<'a> {
    story: &'a Story,
    tree: &'a Tree<'a>,
    folded: &'a HashSet<String>,
    /// The items of the previous draw not reused yet, by `kind:record`.
    kept: RefCell<HashMap<String, Item>>,
    /// The items of this draw.
    drawn: RefCell<HashMap<String, Item>>,
    /// The last item drawn on the current path.
    last_on_path: RefCell<Option<HtmlElement>>,
}

impl Draw<'_> {
    /// Fills `list` with the rounds continuing `pick` (`None`: the opening's).
    fn rounds(&self, list: &Element, pick: Option<&str>) {
        let mut children = vec![];
        for &at in self.tree.rounds_after(pick) {
            let round = &self.tree.rounds[at];
            let Some(first) = round.records.first() else {
                continue;
            };
            let on_path = round.records.iter().any(|r| {
                self.story.path.contains(&r.record_id) || self.story.pending.contains(&r.record_id)
            });
            let label = format!(
                "Step {} · {} {}",
                first.step,
                round.records.len(),
                if round.records.len() == 1 {
                    "candidate"
                } else {
                    "candidates"
                }
            );
            let key = format!("round:{}", first.record_id);
            let mut item = self.item(&key, "round", &first.record_id, label, on_path);
            item.set("data-step", &first.step.to_string());
            let group = self.group(&mut item, &key, false);
            let candidates: Vec<HtmlElement> = round
                .records
                .iter()
                .map(|record| self.candidate(round, record))
                .collect();
            place(&group, &candidates);
            children.push(item.item.clone());
            self.drawn.borrow_mut().insert(key, item);
        }
        place(list, &children);
    }

    /// The item of candidate `record` of `round`, with the rounds continuing it.
    fn candidate(
        &self,
        round: &Round,
        record: &crate::data::records::CandidateRecord,
    ) -> HtmlElement {
        let outcome = outcome(self.story, round, record);
        let on_path = self.story.path.contains(&record.record_id);
        let excerpt: String = record.output_text.chars().take(EXCERPT_CHARS).collect();
        let more = if record.output_text.chars().count() > EXCERPT_CHARS {
            "…"
        } else {
            ""
        };
        let label = format!(
            "{} · {}{} · {} · “{excerpt}{more}”",
            record.candidate,
            describe(outcome),
            if on_path { ", in the story" } else { "" },
            record.policy
        );
        let key = format!("candidate:{}", record.record_id);
        let mut item = self.item(&key, "candidate", &record.record_id, label, on_path);
        item.set("data-outcome", outcome.name());
        let after = self.tree.rounds_after(Some(&record.record_id));
        if after.is_empty() {
            if let Some(group) = item.group.take() {
                group.remove();
                let _ = item.item.remove_attribute("aria-expanded");
                item.shown.retain(|(name, _)| *name != "aria-expanded");
            }
        } else {
            // A single line of rounds is drawn without indenting (200 rounds stay readable);
            // branches indent.
            let branching = round
                .records
                .iter()
                .filter(|r| !self.tree.rounds_after(Some(&r.record_id)).is_empty())
                .count()
                > 1;
            let chain = after.len() == 1 && !branching;
            let group = self.group(&mut item, &key, chain);
            self.rounds(&group, Some(&record.record_id));
        }
        let element = item.item.clone();
        self.drawn.borrow_mut().insert(key, item);
        element
    }

    /// The item `key` (of `kind`, for `record`) of the previous draw, or a new one, labelled
    /// `label` (set as text).
    fn item(&self, key: &str, kind: &str, record: &str, label: String, on_path: bool) -> Item {
        let mut item = self
            .kept
            .borrow_mut()
            .remove(key)
            .unwrap_or_else(|| Item::new(kind, record));
        item.set("data-current", if on_path { "true" } else { "false" });
        item.set_label(label);
        if on_path {
            self.last_on_path.replace(Some(item.item.clone()));
        }
        item
    }

    /// The list holding `item`'s children (folded as the writer left it); `chain`: drawn
    /// without indenting.
    fn group(&self, item: &mut Item, key: &str, chain: bool) -> HtmlElement {
        let folded = self.folded.contains(key);
        item.set("aria-expanded", if folded { "false" } else { "true" });
        let group = item.group.get_or_insert_with(|| {
            let group = el("ul", "");
            let _ = group.set_attribute("role", "group");
            append(&item.item, &group);
            group
        });
        let class = if chain { "chain" } else { "" };
        if group.class_name() != class {
            group.set_class_name(class);
        }
        group.clone()
    }
}

/// Makes `children` the element children of `list`, in order, moving only those out of place.
fn place(list: &Element, children: &[HtmlElement]) {
    let mut at = list.first_element_child();
    for child in children {
        match &at {
            Some(current) if current == child.as_ref() => at = current.next_element_sibling(),
            _ => {
                let _ = list.insert_before(child, at.as_ref().map(AsRef::as_ref));
            }
        }
    }
    while let Some(extra) = at {
        at = extra.next_element_sibling();
        extra.remove();
    }
}

/// A digest of what `story`'s tree shows: the story, its records with their choices, the
/// current path and the round waiting for a choice.
fn drawn_state(story: Option<&Story>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(story) = story {
        story.id.hash(&mut hasher);
        for record in &story.records {
            (
                &record.record_id,
                record.chosen,
                record.rejected_all_at.is_some(),
            )
                .hash(&mut hasher);
        }
        story.path.hash(&mut hasher);
        story.pending.hash(&mut hasher);
    }
    hasher.finish()
}

/// An outcome in words.
fn describe(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Chosen => "chosen",
        Outcome::Waiting => "waiting",
        Outcome::Rejected => "rejected",
        Outcome::NotPicked => "not picked",
    }
}

/// An item's `kind:record` key.
fn key(item: &Element) -> String {
    format!(
        "{}:{}",
        item.get_attribute("data-kind").unwrap_or_default(),
        item.get_attribute("data-record").unwrap_or_default()
    )
}

/// The selector of the item with `key`.
fn item_selector(key: &str) -> String {
    let (kind, record) = key.split_once(':').unwrap_or_default();
    format!("li[data-kind=\"{kind}\"][data-record=\"{record}\"]")
}

/// The first item under `item`.
fn first_child(item: &Element) -> Option<Element> {
    item.query_selector(":scope > ul > li").ok().flatten()
}

/// Takes every item under `tree` out of the tab order.
fn clear_tab_stops(tree: &Element) {
    while let Some(stop) = tree
        .query_selector("li[tabindex=\"0\"]")
        .ok()
        .flatten()
        .and_then(|stop| stop.dyn_into::<HtmlElement>().ok())
    {
        stop.set_tab_index(-1);
    }
}

/// Moves the tree's one tab stop to `item` and focuses it.
fn focus(item: &Element) {
    let Some(item) = item.dyn_ref::<HtmlElement>() else {
        return;
    };
    if let Some(tree) = item.closest("[role=tree]").ok().flatten() {
        clear_tab_stops(&tree);
    }
    item.set_tab_index(0);
    let _ = item.focus();
}

/// Continues the story from `item`: a round waits for a choice again, a candidate is taken.
fn continue_from(app: &Rc<App>, item: &Element) {
    let Some(record) = item.get_attribute("data-record") else {
        return;
    };
    let pick = item.get_attribute("data-kind").as_deref() == Some("candidate");
    app.change_story(move |story| story.go_to(&record, pick));
}
