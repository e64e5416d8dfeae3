//! The writer's settings: the policy of each candidate, the parameter table (bundled, fetched
//! from a URL, or learned from the writer's own choices) and manual overrides; and the plan of
//! a round's candidates from them; and the settings panel's choices as saved across visits.

use serde::{Deserialize, Serialize};

use crate::data::design::{plan_round, Display};
use crate::data::params::{Policy, PolicyMix, StepTable};
use crate::data::records::{new_seed, CandidateRecord};
use crate::data::stats::{ParamValues, SelectionRecord, StatsBuilder, StatsOptions};
use crate::data::story::PlannedCandidate;
use crate::shared::SamplingParams;

/// Where the parameter table came from.
#[derive(Clone, Debug, PartialEq)]
pub enum TableSource {
    /// `www/params/steps.json`, bundled into the app.
    Bundled,
    /// Fetched from this URL.
    Url(String),
    /// Rebuilt from the writer's own records (`stats::StatsBuilder`), with this many choices.
    Learned(u64),
}

impl TableSource {
    /// A short label for the cards ("bundled table", …).
    pub fn label(&self) -> String {
        match self {
            TableSource::Bundled => "bundled table".into(),
            TableSource::Url(url) => format!("table from {url}"),
            TableSource::Learned(n) => format!("table learned from my {n} choices"),
        }
    }
}

/// Values the writer fixed by hand for every candidate (`None`: from the policy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Temperature.
    pub temperature: Option<f32>,
    /// Top-k.
    pub top_k: Option<usize>,
    /// Top-p.
    pub top_p: Option<f32>,
    /// Maximum new tokens.
    pub max_new_tokens: Option<usize>,
}

impl Overrides {
    /// Whether any value is set.
    pub fn any(&self) -> bool {
        *self != Overrides::default()
    }

    /// `params` with the overridden values.
    fn apply(&self, mut params: SamplingParams) -> SamplingParams {
        if let Some(v) = self.temperature {
            params.temperature = v;
        }
        if let Some(v) = self.top_k {
            params.top_k = v;
        }
        if let Some(v) = self.top_p {
            params.top_p = v;
        }
        if let Some(v) = self.max_new_tokens {
            params.max_new_tokens = v;
        }
        params
    }
}

/// Everything that decides a round's parameters.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One policy per candidate.
    pub mix: PolicyMix,
    /// How many candidates a round writes: the first `candidates` policies of `mix` (1 to 3;
    /// fewer are faster on a slow machine).
    pub candidates: usize,
    /// The parameter table.
    pub table: StepTable,
    /// Where it came from.
    pub source: TableSource,
    /// Manual overrides.
    pub overrides: Overrides,
    /// Whether the cards of a round are shown in a seeded random order of their policies (so
    /// that a preference for a place on the page cannot pass for one for a policy), or in the
    /// order of the policies above.
    pub shuffle: bool,
}

impl Default for Settings {
    /// The bundled table with step-mean, step-sample, step-sample; three candidates.
    fn default() -> Self {
        let mix = PolicyMix::default();
        Self {
            candidates: mix.policies.len(),
            mix,
            table: StepTable::bundled(),
            source: TableSource::Bundled,
            overrides: Overrides::default(),
            shuffle: true,
        }
    }
}

impl Settings {
    /// Plans the candidates of `step` ([`plan_round`] from a fresh seed): parameters from the
    /// first [`Settings::candidates`] policies, shown in a shuffled order when
    /// [`Settings::shuffle`] is on, then the overrides, which make the policy `manual`. Fails when an override is invalid or the number of candidates is not 1 to the
    /// number of policies.
    pub fn plan(&self, step: u32) -> crate::Result<Vec<PlannedCandidate>> {
        let policies = self.mix.policies.len();
        if !(1..=policies).contains(&self.candidates) {
            return Err(crate::Error::Invalid(format!(
                "candidates per step: {} is not between 1 and {policies}",
                self.candidates
            )));
        }
        let manual = self.overrides.any();
        let mix = PolicyMix {
            policies: self.mix.policies[..self.candidates].to_vec(),
            ..self.mix.clone()
        };
        let display = if self.shuffle {
            Display::Shuffled
        } else {
            Display::InMixOrder
        };
        plan_round(
            &self.table,
            &self.source.label(),
            &mix,
            step,
            new_seed(),
            display,
        )
        .into_iter()
        .map(|mut planned| {
            if manual {
                planned.params = self.overrides.apply(planned.params);
                planned.policy = "manual".into();
                // The writer set these parameters: no policy drew them.
                if let Some(design) = planned.design.as_mut() {
                    design.log_propensity = None;
                }
            }
            planned.params.validate()?;
            Ok(planned)
        })
        .collect()
    }
}

/// `localStorage` key of the settings panel's choices ([`SavedSettings`]).
pub const SETTINGS_KEY: &str = "storywriter.settings";

/// `localStorage` key under which earlier versions kept the number of candidates per step on
/// its own: read once into [`SavedSettings`], then removed.
pub const OLD_CANDIDATES_KEY: &str = "storywriter.candidates-per-step";

/// The settings panel's choices as kept across visits: the fields as the writer typed them, so
/// that a reload restores the panel and the settings are read from it as before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedSettings {
    /// The policy name of each candidate.
    pub policies: Vec<String>,
    /// The table source applied last: `bundled`, `url` or `learned`.
    pub table: String,
    /// The table URL field.
    pub table_url: String,
    /// The manual override fields: temperature, top-k, top-p, max new tokens.
    pub overrides: Vec<String>,
    /// Candidates per step (missing from settings saved before it was kept here).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Whether the cards are shuffled (missing from settings saved before it existed: on).
    #[serde(default)]
    pub shuffle: Option<bool>,
}

impl Default for SavedSettings {
    /// The panel as the page first shows it.
    fn default() -> Self {
        Self {
            policies: vec![],
            table: "bundled".into(),
            table_url: String::new(),
            overrides: vec![],
            candidates: None,
            shuffle: None,
        }
    }
}

impl SavedSettings {
    /// What earlier visits saved: `saved`, the JSON under [`SETTINGS_KEY`] (the default when it
    /// is missing or does not parse), completed by `old_candidates`, the number under
    /// [`OLD_CANDIDATES_KEY`].
    pub fn restore(saved: Option<&str>, old_candidates: Option<&str>) -> Self {
        let mut settings: Self = saved
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        if settings.candidates.is_none() {
            settings.candidates = old_candidates.and_then(|n| n.trim().parse().ok());
        }
        settings
    }
}

/// Where a candidate's parameters came from, in words, for its card.
pub fn policy_source(policy: &str, table: Option<&str>) -> String {
    let table = table.map(|t| format!(" ({t})")).unwrap_or_default();
    match policy.parse::<Policy>() {
        Ok(Policy::StepMean) => format!("step-mean: the step's means{table}"),
        Ok(Policy::StepSample) => format!("step-sample: sampled from the step's spread{table}"),
        Ok(Policy::CoupledRandom) => {
            format!("coupled-random: coupled random draw in p10–p90{table}")
        }
        Ok(Policy::Fixed) => "fixed: fixed parameters".into(),
        Err(_) if policy == "manual" => "manual: overridden by hand".into(),
        Err(_) => policy.to_string(),
    }
}

/// A table rebuilt from the writer's own records (every story); fails when none was chosen.
pub fn learned_table(records: &[CandidateRecord]) -> crate::Result<(StepTable, u64)> {
    let mut builder = StatsBuilder::new(StatsOptions::default())?;
    for record in records {
        builder.add(&SelectionRecord {
            record_id: Some(record.record_id.clone()),
            story_id: record.story_id.clone(),
            step: record.step,
            chosen: record.chosen,
            params: ParamValues::from_params(&record.params),
        });
    }
    let chosen = builder.chosen();
    Ok((
        builder.finish("learned from my own choices in the web app")?,
        chosen,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_gives_three_candidates_with_policies() {
        let planned = Settings::default().plan(1).unwrap();
        let mut policies: Vec<&str> = planned.iter().map(|p| p.policy.as_str()).collect();
        policies.sort();
        assert_eq!(policies, ["step-mean", "step-sample", "step-sample"]);
    }

    /// Shuffled rounds show the policies in every order, each recorded (position and slot);
    /// unshuffled ones in the settings' order.
    #[test]
    fn plan_shuffles_the_cards_and_records_where_each_went() {
        let settings = Settings::default();
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let planned = settings.plan(2).unwrap();
            let slots: Vec<u32> = planned
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    let design = p.design.unwrap();
                    assert_eq!(design.display_position, index as u32 + 1);
                    design.mix_slot
                })
                .collect();
            let slot_of_mean = planned
                .iter()
                .position(|p| p.policy == "step-mean")
                .unwrap();
            assert_eq!(slots[slot_of_mean], 1);
            orders.insert(slots);
        }
        assert_eq!(orders.len(), 6, "{orders:?}");
        let in_order = Settings {
            shuffle: false,
            ..Settings::default()
        };
        for _ in 0..10 {
            let slots: Vec<u32> = in_order
                .plan(2)
                .unwrap()
                .iter()
                .map(|p| p.design.unwrap().mix_slot)
                .collect();
            assert_eq!(slots, [1, 2, 3]);
        }
    }

    #[test]
    fn plan_writes_the_first_policies_up_to_the_number_of_candidates() {
        let mut settings = Settings {
            candidates: 1,
            ..Settings::default()
        };
        let planned = settings.plan(1).unwrap();
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].policy, "step-mean");
        settings.candidates = 2;
        let mut policies: Vec<String> = settings
            .plan(1)
            .unwrap()
            .into_iter()
            .map(|p| p.policy)
            .collect();
        policies.sort();
        assert_eq!(policies, ["step-mean", "step-sample"]);
        for bad in [0, 4] {
            settings.candidates = bad;
            let error = settings.plan(1).unwrap_err().to_string();
            assert!(error.contains("candidates per step"), "{error}");
        }
    }

    #[test]
    fn overrides_make_candidates_manual() {
        let settings = Settings {
            overrides: Overrides {
                temperature: Some(0.5),
                max_new_tokens: Some(7),
                ..Overrides::default()
            },
            ..Settings::default()
        };
        for planned in settings.plan(2).unwrap() {
            assert_eq!(planned.policy, "manual");
            assert_eq!(planned.params.temperature, 0.5);
            assert_eq!(planned.params.max_new_tokens, 7);
        }
        let bad = Settings {
            overrides: Overrides {
                top_p: Some(0.0),
                ..Overrides::default()
            },
            ..Settings::default()
        };
        assert!(bad.plan(1).is_err());
    }

    #[test]
    fn saved_settings_take_the_old_candidates_key_once() {
        let before = r#"{"policies":["fixed"],"table":"url","table_url":"t.json","overrides":["0.5","","",""]}"#;
        let restored = SavedSettings::restore(Some(before), Some("2"));
        assert_eq!(restored.policies, ["fixed"]);
        assert_eq!(
            (restored.table.as_str(), restored.table_url.as_str()),
            ("url", "t.json")
        );
        assert_eq!(restored.candidates, Some(2));
        // Saved again under the one key, the number is kept there, whatever the old key says.
        let json = serde_json::to_string(&restored).unwrap();
        assert_eq!(SavedSettings::restore(Some(&json), Some("1")), restored);
        assert_eq!(SavedSettings::restore(Some(&json), None), restored);
        // Only the old key, or nothing (or something unreadable) saved.
        let only_count = SavedSettings::restore(None, Some("1"));
        assert_eq!(only_count.candidates, Some(1));
        assert_eq!(only_count.table, "bundled");
        assert_eq!(
            SavedSettings::restore(Some("{"), None),
            SavedSettings::default()
        );
    }

    #[test]
    fn learned_table_needs_a_choice() {
        assert!(learned_table(&[]).is_err());
    }

    #[test]
    fn policy_sources_are_named() {
        let sampled = policy_source("step-sample", Some("bundled table"));
        assert!(sampled.contains("sampled") && sampled.ends_with("(bundled table)"));
        assert!(policy_source("step-mean", None).ends_with("means"));
        assert!(policy_source("manual", Some("x")).contains("by hand"));
    }
}
