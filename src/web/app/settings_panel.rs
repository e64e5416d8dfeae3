//! The settings panel: candidates per step, the policy of each candidate, the parameter table
//! (bundled, from a URL, or learned from the writer's choices), the manual overrides, and the
//! chart of the table with the story's chosen values. The choices are saved under one
//! `localStorage` key ([`SavedSettings`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlElement, HtmlInputElement, HtmlSelectElement};

use super::{click, fetch_text, with_app, App};
use crate::data::params::{Param, Policy, StepTable, BUNDLED_VOCAB_SIZE, MAX_NEW_TOKENS_CAP};
use crate::data::records::CandidateRecord;
use crate::data::story::PlannedCandidate;
use crate::web::chart;
use crate::web::dom::{
    append, by_testid, clear, input, local_storage, on, set_text, show, text_el,
};
use crate::web::error::{Error, Result};
use crate::web::settings::{
    learned_table, SavedSettings, Settings, TableSource, OLD_CANDIDATES_KEY, SETTINGS_KEY,
};

/// The four manual override fields, by data-testid, in the order of
/// [`SavedSettings::overrides`].
const OVERRIDE_FIELDS: [&str; 4] = [
    "override-temperature",
    "override-top-k",
    "override-top-p",
    "override-max-new-tokens",
];

fn select(id: &str) -> HtmlSelectElement {
    by_testid(id).unchecked_into()
}

/// The settings panel's nodes and state.
pub(super) struct SettingsPanel {
    panel: HtmlElement,
    policies: [HtmlSelectElement; 3],
    candidates: HtmlSelectElement,
    shuffle: HtmlInputElement,
    table_source: HtmlSelectElement,
    table_url: HtmlInputElement,
    table_status: HtmlElement,
    overrides: [HtmlInputElement; 4],
    override_status: HtmlElement,
    chart_param: HtmlSelectElement,
    chart: HtmlElement,
    settings: RefCell<Settings>,
    /// The loaded model's vocabulary size (it bounds the table's top_k).
    vocab_size: Cell<usize>,
    /// The saved table source (URL or learned) is applied again once a model is ready.
    restore_table: Cell<bool>,
}

impl SettingsPanel {
    /// Finds the panel's nodes.
    pub(super) fn new() -> Self {
        Self {
            panel: by_testid("settings"),
            policies: [1, 2, 3].map(|i| select(&format!("policy-{i}"))),
            candidates: select("candidates-per-step"),
            shuffle: input("shuffle-cards"),
            table_source: select("table-source"),
            table_url: input("table-url"),
            table_status: by_testid("table-status"),
            overrides: OVERRIDE_FIELDS.map(input),
            override_status: by_testid("override-status"),
            chart_param: select("chart-param"),
            chart: by_testid("chart"),
            settings: RefCell::default(),
            vocab_size: Cell::new(BUNDLED_VOCAB_SIZE),
            restore_table: Cell::new(false),
        }
    }

    /// Installs the panel's listeners.
    pub(super) fn wire(&self, app: &Rc<App>) {
        click(app, &by_testid("settings-toggle"), |app| {
            let panel = &app.settings.panel;
            show(panel, panel.hidden());
        });
        for (index, policy) in self.policies.iter().enumerate() {
            let changed = with_app(app, move |app, _: web_sys::Event| {
                let panel = &app.settings;
                if let Ok(policy) = panel.policies[index].value().parse::<Policy>() {
                    panel.settings.borrow_mut().mix.policies[index] = policy;
                    panel.save();
                }
            });
            on(policy, "change", changed);
        }
        let changed = with_app(app, |app, _: web_sys::Event| app.settings.read_candidates());
        on(&self.candidates, "change", changed);
        let changed = with_app(app, |app, _: web_sys::Event| {
            let panel = &app.settings;
            panel.settings.borrow_mut().shuffle = panel.shuffle.checked();
            panel.save();
        });
        on(&self.shuffle, "change", changed);
        click(app, &by_testid("table-apply"), |app| {
            let app = app.clone();
            spawn_local(async move { app.settings.apply_table(&app).await });
        });
        for field in &self.overrides {
            let changed = with_app(app, |app, _: web_sys::Event| {
                app.settings.read_overrides();
                app.settings.save();
            });
            on(field, "input", changed);
        }
        let changed = with_app(app, |app, _: web_sys::Event| app.settings.render_chart(app));
        on(&self.chart_param, "change", changed);
    }

    /// Restores the choices saved by earlier visits (moving the number of candidates out of
    /// its old key): policies, overrides and candidates at once, a URL or learned table once a
    /// model is ready (its vocabulary bounds the table).
    pub(super) fn restore(&self) {
        let storage = local_storage();
        let get = |key| {
            storage
                .as_ref()
                .and_then(|s| s.get_item(key).ok().flatten())
        };
        let old_candidates = get(OLD_CANDIDATES_KEY);
        let saved = SavedSettings::restore(get(SETTINGS_KEY).as_deref(), old_candidates.as_deref());
        {
            let mut settings = self.settings.borrow_mut();
            for (slot, name) in settings.mix.policies.iter_mut().zip(&saved.policies) {
                if let Ok(policy) = name.parse::<Policy>() {
                    *slot = policy;
                }
            }
            if let Some(count) = saved.candidates {
                if (1..=settings.mix.policies.len()).contains(&count) {
                    settings.candidates = count;
                }
            }
            settings.shuffle = saved.shuffle.unwrap_or(true);
        }
        self.restore_table.set(saved.table != "bundled");
        self.table_source.set_value(&saved.table);
        self.table_url.set_value(&saved.table_url);
        for (field, value) in self.overrides.iter().zip(&saved.overrides) {
            field.set_value(value);
        }
        self.read_overrides();
        if let (Some(storage), Some(_)) = (&storage, old_candidates) {
            self.save();
            let _ = storage.remove_item(OLD_CANDIDATES_KEY);
        }
        self.render();
    }

    /// Keeps the panel's choices in `localStorage` for the next visit.
    fn save(&self) {
        let settings = self.settings.borrow();
        let saved = SavedSettings {
            policies: settings
                .mix
                .policies
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            table: match settings.source {
                TableSource::Bundled => "bundled",
                TableSource::Url(_) => "url",
                TableSource::Learned(_) => "learned",
            }
            .into(),
            table_url: match &settings.source {
                TableSource::Url(url) => url.clone(),
                _ => self.table_url.value(),
            },
            overrides: self.overrides.iter().map(|field| field.value()).collect(),
            candidates: Some(settings.candidates),
            shuffle: Some(settings.shuffle),
        };
        if let (Some(storage), Ok(json)) = (local_storage(), serde_json::to_string(&saved)) {
            let _ = storage.set_item(SETTINGS_KEY, &json);
        }
    }

    /// Shows the policies (those beyond the number of candidates disabled), the number of
    /// candidates and the table in use.
    fn render(&self) {
        let settings = self.settings.borrow();
        for (index, (select, policy)) in
            self.policies.iter().zip(&settings.mix.policies).enumerate()
        {
            clear(select);
            for option in Policy::ALL {
                let element = text_el("option", "", option.name());
                let _ = element.set_attribute("value", option.name());
                append(select, &element);
            }
            select.set_value(policy.name());
            select.set_disabled(index >= settings.candidates);
        }
        self.candidates.set_value(&settings.candidates.to_string());
        self.shuffle.set_checked(settings.shuffle);
        set_text(&self.table_status, &settings.source.label());
    }

    /// Takes the number of candidates per step from its menu and saves it.
    fn read_candidates(&self) {
        let Ok(count) = self.candidates.value().parse::<usize>() else {
            return;
        };
        self.settings.borrow_mut().candidates = count;
        self.save();
        self.render();
    }

    /// Takes the manual overrides from their fields, saying which are not numbers.
    fn read_overrides(&self) {
        let mut bad = vec![];
        let mut number = |field: &HtmlInputElement, name: &str| {
            let value = field.value();
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            let parsed = value.parse::<f64>().ok();
            if parsed.is_none() {
                bad.push(name.to_string());
            }
            parsed
        };
        let [temperature, top_k, top_p, max_new_tokens] = &self.overrides;
        let mut settings = self.settings.borrow_mut();
        let overrides = &mut settings.overrides;
        overrides.temperature = number(temperature, "temperature").map(|v| v as f32);
        overrides.top_k = number(top_k, "top_k").map(|v| v.max(0.0) as usize);
        overrides.top_p = number(top_p, "top_p").map(|v| v as f32);
        overrides.max_new_tokens = number(max_new_tokens, "max new tokens")
            .map(|v| (v.max(1.0) as usize).min(MAX_NEW_TOKENS_CAP));
        let status = if !bad.is_empty() {
            format!("Not a number: {}", bad.join(", "))
        } else if overrides.any() {
            "Overrides apply to every candidate (recorded as policy \"manual\").".into()
        } else {
            String::new()
        };
        set_text(&self.override_status, &status);
    }

    /// Plans the candidates of `step` with the current settings.
    pub(super) fn plan(&self, step: u32) -> crate::Result<Vec<PlannedCandidate>> {
        self.settings.borrow().plan(step)
    }

    /// A model is ready: the bundled table is bounded by its vocabulary, and a saved URL or
    /// learned table is applied again.
    pub(super) fn model_ready(&self, app: &Rc<App>, vocab_size: usize) {
        self.vocab_size.set(vocab_size);
        {
            let mut settings = self.settings.borrow_mut();
            if settings.source == TableSource::Bundled {
                settings.table = StepTable::bundled_for(vocab_size).0;
            }
        }
        self.render_chart(app);
        if self.restore_table.take() {
            let app = app.clone();
            spawn_local(async move { app.settings.apply_table(&app).await });
        }
    }

    /// Uses the table the source menu names, saying what came of it.
    async fn apply_table(&self, app: &Rc<App>) {
        match self.read_table(app).await {
            Ok((table, source, warnings)) => {
                let mut text = format!("Using the {}.", source.label());
                if !warnings.is_empty() {
                    text += &format!(" Warnings: {}", warnings.join("; "));
                }
                set_text(&self.table_status, &text);
                let mut settings = self.settings.borrow_mut();
                settings.table = table;
                settings.source = source;
                drop(settings);
                self.save();
            }
            Err(e) => set_text(&self.table_status, &format!("Table not changed: {e}")),
        }
        self.render_chart(app);
    }

    /// The table the source menu names, where it came from, and its warnings.
    async fn read_table(&self, app: &App) -> Result<(StepTable, TableSource, Vec<String>)> {
        let vocab_size = self.vocab_size.get();
        let words = |warnings: Vec<crate::data::params::TableWarning>| {
            warnings.iter().map(ToString::to_string).collect()
        };
        match self.table_source.value().as_str() {
            "url" => {
                let url = self.table_url.value();
                let text = fetch_text(&url).await?;
                let (table, warnings) = StepTable::from_json(&text, &url, vocab_size)?;
                Ok((table, TableSource::Url(url), words(warnings)))
            }
            "learned" => {
                let db = app
                    .db()
                    .ok_or_else(|| Error::Other("IndexedDB is not available".into()))?;
                let (records, _) = db.records().await?;
                let (table, chosen) = learned_table(&records)?;
                Ok((table, TableSource::Learned(chosen), vec![]))
            }
            _ => {
                let (table, warnings) = StepTable::bundled_for(vocab_size);
                Ok((table, TableSource::Bundled, words(warnings)))
            }
        }
    }

    /// Draws the chart of the chosen parameter for the open story.
    pub(super) fn render_chart(&self, app: &App) {
        let state = app.state.borrow();
        let chosen: Vec<&CandidateRecord> = state
            .current
            .as_ref()
            .map(|c| {
                c.story
                    .path
                    .iter()
                    .filter_map(|id| c.story.record(id))
                    .collect()
            })
            .unwrap_or_default();
        chart::render(
            &self.chart,
            &self.settings.borrow().table,
            Param::from_name(&self.chart_param.value()).unwrap_or(Param::Temperature),
            &chosen,
        );
    }
}
