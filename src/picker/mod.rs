//! The learned picker: predicts which candidate of a round a writer picks.
//!
//! [`features`] turns each candidate's record into numbers; [`train`] fits a linear score per
//! candidate with a softmax over the round (Plackett–Luce top-1) on candle; [`eval`] measures
//! top-1 and log loss against chance and baselines with bootstrap intervals; [`simulated`] holds
//! scripted writers with hidden rules for testing the learning. A [`Picker`] is saved as
//! safetensors (the weights and feature scaling) plus a JSON card ([`PickerCard`]: features,
//! feature version, the hidden-state width, the model its training candidates came from, data
//! sizes, metrics); loading one of another feature version, or scoring candidates of another
//! model, is an error.
//!
//! BLOOM's final hidden state (each record's `hidden_mean`) joins the features when every
//! training record has one of the same width, and is kept only when it predicts the validation
//! rounds better than the named features alone. A picker that reads it refuses records without
//! it (or of another width) rather than guessing.

pub mod eval;
pub mod features;
pub mod simulated;
pub mod train;

use std::collections::{BTreeSet, HashMap};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::records::CandidateRecord;
use crate::error::{Error, Result};
use crate::shared::ModelIdentity;
use eval::{evaluate, Evaluation, Labelled};
use features::{
    common_hidden_width, rounds_from_records, PickRound, FEATURES, FEATURE_NAMES, FEATURE_VERSION,
    PARAM_FEATURES,
};
use train::{split_by_story, train_scorer, LinearScorer, TrainOptions, TrainReport};

/// The schema tag of a picker card.
pub const PICKER_SCHEMA: &str = "storywriter.picker/1";

/// Sizes of a data split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSize {
    /// Rounds.
    pub rounds: usize,
    /// Distinct stories.
    pub stories: usize,
}

/// What a picker is and how it was trained; saved as JSON next to its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PickerCard {
    /// Always [`PICKER_SCHEMA`].
    pub schema: String,
    /// [`FEATURE_VERSION`] at training time.
    pub feature_version: u32,
    /// The named features (the scorer's indices below their count).
    pub features: Vec<String>,
    /// Hidden-state values the scorer reads after the named features (indices from
    /// `features.len()` on); 0 when it reads none.
    #[serde(default)]
    pub hidden_width: usize,
    /// Why the scorer reads the hidden state or not.
    #[serde(default)]
    pub hidden_state: String,
    /// The model whose candidates it was trained on.
    pub model: ModelIdentity,
    /// Training rounds (validation included).
    pub train: SplitSize,
    /// Held-out rounds.
    pub test: SplitSize,
    /// Rounds skipped: fewer than two candidates.
    pub skipped_too_few_candidates: usize,
    /// Rounds skipped: no choice or several.
    pub skipped_undecided: usize,
    /// The settings.
    pub options: TrainOptions,
    /// How the optimization of the kept scorer went.
    pub training: TrainReport,
    /// Whether the scorer is the params-only one, kept because it predicted the validation
    /// rounds at least as well as the one reading every feature.
    #[serde(default)]
    pub uses_params_only: bool,
    /// Held-out metrics (`None` when no story was left for testing).
    pub test_metrics: Option<Evaluation>,
    /// The app that trained it.
    pub app_version: String,
}

/// A trained picker: the full scorer, the params-only baseline, and the card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Picker {
    /// Scores candidates from all features.
    pub scorer: LinearScorer,
    /// The params-only baseline trained on the same rounds.
    pub params_only: LinearScorer,
    /// What it is.
    pub card: PickerCard,
}

/// Learnable rounds of `records`, with an error that says why there are none.
pub fn learnable_rounds(records: &[CandidateRecord]) -> Result<features::RoundSummary> {
    if records.is_empty() {
        return Err(Error::Invalid("the log holds no records".into()));
    }
    let summary = rounds_from_records(records);
    if summary.rounds.is_empty() {
        return Err(Error::Invalid(format!(
            "no round to learn from: a round needs at least two candidates and exactly one \
             choice ({} rounds had fewer than two candidates, {} had no single choice)",
            summary.too_few_candidates, summary.undecided
        )));
    }
    Ok(summary)
}

fn labelled(rounds: &[PickRound], indices: &[usize], hidden_width: usize) -> Vec<Labelled> {
    indices
        .iter()
        .map(|&i| {
            (
                rounds[i].features(hidden_width),
                rounds[i].chosen.unwrap_or(0),
            )
        })
        .collect()
}

fn stories(rounds: &[PickRound], indices: &[usize]) -> usize {
    let set: BTreeSet<&str> = indices
        .iter()
        .map(|&i| rounds[i].story_id.as_str())
        .collect();
    set.len()
}

/// The most common model among the rounds' candidates.
fn majority_model(rounds: &[PickRound]) -> ModelIdentity {
    let mut counts: HashMap<&str, (usize, &ModelIdentity)> = HashMap::new();
    for record in rounds.iter().flat_map(|r| &r.records) {
        counts
            .entry(&record.model.content_hash)
            .or_insert((0, &record.model))
            .0 += 1;
    }
    let (_, model) = counts
        .into_values()
        .max_by_key(|(n, m)| (*n, m.content_hash.clone()))
        .expect("at least one round");
    model.clone()
}

impl Picker {
    /// Trains a picker on the learnable rounds of `records`: stories split into held-out
    /// test, validation (early stopping, and the choice between the scorers: params-only, the
    /// named features, and those plus the hidden state when every record has one) and
    /// training sets, never sharing a story. Needs at least two stories (one to
    /// learn from, one to test on).
    pub fn train(records: &[CandidateRecord], options: &TrainOptions) -> Result<Self> {
        Self::train_with_progress(records, options, &mut |_| {})
    }

    /// Like [`Picker::train`], telling `on_progress` how far training is (0 to 1) after each
    /// epoch: the scorers one after the other.
    pub fn train_with_progress(
        records: &[CandidateRecord],
        options: &TrainOptions,
        on_progress: &mut dyn FnMut(f64),
    ) -> Result<Self> {
        let summary = learnable_rounds(records)?;
        let rounds = &summary.rounds;
        let story_count = stories(rounds, &(0..rounds.len()).collect::<Vec<_>>());
        if story_count < 2 {
            return Err(Error::Invalid(format!(
                "the log holds {story_count} story with learnable rounds: training splits by \
                 story (never the same story in training and test), so it needs at least two"
            )));
        }
        let (test, rest) = split_by_story(rounds, options.test_fraction, options.seed);
        let (test, rest) = if test.is_empty() || rest.is_empty() {
            // Few stories: hold out the first story alone.
            let first = &rounds[0].story_id;
            (0..rounds.len()).partition(|&i| &rounds[i].story_id == first)
        } else {
            (test, rest)
        };
        let rest_rounds: Vec<PickRound> = rest.iter().map(|&i| rounds[i].clone()).collect();
        let (validation, fit) = split_by_story(
            &rest_rounds,
            options.validation_fraction,
            options.seed ^ 0x5eed,
        );
        let (validation, fit) = if fit.is_empty() {
            (vec![], validation)
        } else {
            (validation, fit)
        };
        let width = common_hidden_width(rounds.iter().flat_map(|r| &r.records));
        let hidden = width.unwrap_or(0);
        let fit_data = labelled(&rest_rounds, &fit, hidden);
        let validation_data = labelled(&rest_rounds, &validation, hidden);
        // The scorers, simplest first: a later one is kept only when it predicts the validation
        // rounds strictly better (the extra features otherwise only add noise).
        let named: Vec<usize> = (0..FEATURES).collect();
        let mut subsets = vec![PARAM_FEATURES.to_vec(), named];
        if hidden > 0 {
            subsets.push((0..FEATURES + hidden).collect());
        }
        let (runs, epochs) = (subsets.len() as f64, options.max_epochs.max(1) as f64);
        let mut trained = Vec::with_capacity(subsets.len());
        for (k, subset) in subsets.iter().enumerate() {
            trained.push(train_scorer(
                subset,
                &fit_data,
                &validation_data,
                options,
                &mut |epoch| on_progress((k as f64 + epoch as f64 / epochs) / runs),
            )?);
        }
        on_progress(1.0);
        // Without validation rounds the named features are kept (nothing to choose by).
        let kept = if validation_data.is_empty() {
            1
        } else {
            (0..trained.len()).fold(0, |best, k| {
                let loss = |k: usize| trained[k].1.validation_log_loss;
                if loss(k) < loss(best) {
                    k
                } else {
                    best
                }
            })
        };
        let hidden_state = match (width, kept) {
            (None, _) => "not read: not every training record has a hidden state of one width \
                          (records written before they were recorded, or mixed models)"
                .to_string(),
            (Some(w), 2) => format!("read: {w} values"),
            (Some(w), _) => format!(
                "not read: the {w} values did not predict the validation rounds better than \
                 the named features alone"
            ),
        };
        let hidden_width = if kept == 2 { hidden } else { 0 };
        let uses_params_only = kept == 0;
        let params_only = trained[0].0.clone();
        let (scorer, training) = trained.swap_remove(kept);
        let test_data = labelled(rounds, &test, hidden_width);
        let test_metrics = Some(evaluate(
            &scorer,
            &params_only,
            &test_data,
            stories(rounds, &test),
            options.seed,
        ));
        Ok(Self {
            scorer,
            params_only,
            card: PickerCard {
                schema: PICKER_SCHEMA.into(),
                feature_version: FEATURE_VERSION,
                features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
                hidden_width,
                hidden_state,
                model: majority_model(rounds),
                train: SplitSize {
                    rounds: rest.len(),
                    stories: stories(rounds, &rest),
                },
                test: SplitSize {
                    rounds: test.len(),
                    stories: stories(rounds, &test),
                },
                skipped_too_few_candidates: summary.too_few_candidates,
                skipped_undecided: summary.undecided,
                options: options.clone(),
                training,
                uses_params_only,
                test_metrics,
                app_version: crate::data::story::APP_VERSION.into(),
            },
        })
    }

    /// Fails unless `records` come from the model the picker was trained on.
    pub fn check_model<'a>(
        &self,
        records: impl IntoIterator<Item = &'a CandidateRecord>,
    ) -> Result<()> {
        let trained = &self.card.model;
        match records
            .into_iter()
            .find(|r| r.model.content_hash != trained.content_hash)
        {
            Some(other) => Err(Error::Invalid(format!(
                "the picker was trained on candidates of model {} ({} {}, content hash {}), \
                 but record {} comes from model {} (content hash {}): train a picker on this \
                 model's logs",
                trained.name,
                trained.format,
                trained.quantization,
                trained.content_hash,
                other.record_id,
                other.model.name,
                other.model.content_hash
            ))),
            None => Ok(()),
        }
    }

    /// Fails unless every record has a hidden state of the width the picker reads (when it
    /// reads one).
    pub fn check_hidden<'a>(
        &self,
        records: impl IntoIterator<Item = &'a CandidateRecord>,
    ) -> Result<()> {
        let expected = self.card.hidden_width;
        if expected == 0 {
            return Ok(());
        }
        for record in records {
            let width = record.hidden_mean.as_ref().map_or(0, |h| h.width());
            if width != expected {
                return Err(Error::Invalid(format!(
                    "the picker reads BLOOM's hidden state ({expected} values), but record {} \
                     has {}: score it with a picker trained on records without hidden states, \
                     or generate the candidates again",
                    record.record_id,
                    if width == 0 {
                        "none".to_string()
                    } else {
                        format!("{width} values")
                    }
                )));
            }
        }
        Ok(())
    }

    /// The probability of each candidate of a round (in the given, display, order) being picked.
    pub fn probabilities(&self, round: &[&CandidateRecord]) -> Result<Vec<f64>> {
        self.check_model(round.iter().copied())?;
        self.check_hidden(round.iter().copied())?;
        let features = features::round_features(round, self.card.hidden_width);
        Ok(self.scorer.probabilities(&features))
    }

    /// Evaluates the picker on the learnable rounds of `records` (all of them: give it logs it
    /// was not trained on).
    pub fn evaluate(&self, records: &[CandidateRecord], seed: u64) -> Result<Evaluation> {
        let summary = learnable_rounds(records)?;
        self.check_model(records)?;
        let rounds = &summary.rounds;
        self.check_hidden(rounds.iter().flat_map(|r| &r.records))?;
        let all: Vec<usize> = (0..rounds.len()).collect();
        Ok(evaluate(
            &self.scorer,
            &self.params_only,
            &labelled(rounds, &all, self.card.hidden_width),
            stories(&summary.rounds, &all),
            seed,
        ))
    }

    /// The weights as safetensors bytes and the card as pretty JSON.
    pub fn to_files(&self) -> Result<(Vec<u8>, String)> {
        let device = Device::Cpu;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (prefix, scorer) in [("picker", &self.scorer), ("params_only", &self.params_only)] {
            let features: Vec<u32> = scorer.features.iter().map(|&i| i as u32).collect();
            tensors.push((
                format!("{prefix}.features"),
                Tensor::new(features, &device)?,
            ));
            for (name, values) in [
                ("mean", &scorer.mean),
                ("scale", &scorer.scale),
                ("weight", &scorer.weights),
            ] {
                tensors.push((
                    format!("{prefix}.{name}"),
                    Tensor::new(values.as_slice(), &device)?,
                ));
            }
        }
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| Error::Format(format!("cannot serialize the picker: {e}")))?;
        let card = serde_json::to_string_pretty(&self.card)
            .map_err(|e| Error::Format(format!("cannot write the picker card: {e}")))?;
        Ok((bytes, card))
    }

    /// A picker from its safetensors bytes and card JSON; `origin` names them in errors. Fails
    /// with a clear message on another feature version or feature list, or a malformed file.
    pub fn from_files(weights: &[u8], card: &str, origin: &str) -> Result<Self> {
        let card: PickerCard = serde_json::from_str(card)
            .map_err(|e| Error::Format(format!("{origin}: not a picker card: {e}")))?;
        if card.schema != PICKER_SCHEMA {
            return Err(Error::Format(format!(
                "{origin}: schema {:?}, expected {PICKER_SCHEMA:?}",
                card.schema
            )));
        }
        if card.feature_version != FEATURE_VERSION || card.features != FEATURE_NAMES {
            return Err(Error::Invalid(format!(
                "{origin}: the picker uses feature version {} ({} features), this storywriter \
                 computes version {FEATURE_VERSION} ({FEATURES} features): train it again",
                card.feature_version,
                card.features.len()
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(weights, &Device::Cpu)
            .map_err(|e| Error::Format(format!("{origin}: not a safetensors file: {e}")))?;
        let scorer = |prefix: &str| -> Result<LinearScorer> {
            let get = |name: &str| {
                tensors
                    .get(&format!("{prefix}.{name}"))
                    .ok_or_else(|| Error::Format(format!("{origin}: no tensor {prefix}.{name}")))
            };
            let features: Vec<usize> = get("features")?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|i| i as usize)
                .collect();
            let s = LinearScorer {
                mean: get("mean")?.to_vec1()?,
                scale: get("scale")?.to_vec1()?,
                weights: get("weight")?.to_vec1()?,
                features,
            };
            let n = s.features.len();
            if s.features
                .iter()
                .any(|&i| i >= FEATURES + card.hidden_width)
                || [s.mean.len(), s.scale.len(), s.weights.len()] != [n; 3]
            {
                return Err(Error::Format(format!(
                    "{origin}: tensors of {prefix} do not match its {n} features"
                )));
            }
            Ok(s)
        };
        let (picker, params_only) = (scorer("picker")?, scorer("params_only")?);
        let reads_hidden = picker.features.iter().filter(|&&i| i >= FEATURES).count();
        if reads_hidden != card.hidden_width {
            return Err(Error::Format(format!(
                "{origin}: the card says the picker reads a hidden state of {} values, but its \
                 weights read {reads_hidden}: the card and the weights do not belong together",
                card.hidden_width
            )));
        }
        Ok(Self {
            scorer: picker,
            params_only,
            card,
        })
    }
}
