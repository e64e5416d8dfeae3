//! The per-step parameter table (`storywriter.step-params/1`): what writers chose at each story
//! step, summarised as mean, spread and percentiles of the chosen candidates' parameters.
//!
//! The web app bundles one at `www/params/steps.json`; `storywriter stats` rebuilds one from
//! selection logs; parameter policies turn it into the three candidates' parameters.

use serde::{Deserialize, Serialize};

/// The schema tag every table carries.
pub const STEP_PARAMS_SCHEMA: &str = "storywriter.step-params/1";

/// Summary of one parameter over the chosen candidates of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSummary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

/// The summaries of every tabulated sampling parameter, over one step (or over all steps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepParams {
    /// Story step (1, 2, 3, …); 0 for the `global` row.
    pub step: u32,
    /// Chosen candidates the row was computed from.
    pub count: u64,
    /// Sampling temperature.
    pub temperature: ParamSummary,
    /// Top-k (0 = off).
    pub top_k: ParamSummary,
    /// Nucleus mass.
    pub top_p: ParamSummary,
    /// Typical-sampling mass.
    pub typical_p: ParamSummary,
    /// Repetition penalty.
    pub repetition_penalty: ParamSummary,
    /// Length of the candidate in tokens.
    pub max_new_tokens: ParamSummary,
}

/// Where a table came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSource {
    /// `prior` (a documented guess, no user data) or `selection-logs` (computed by
    /// `storywriter stats`).
    pub kind: String,
    /// What it was computed from, in words.
    pub description: String,
    /// Stories in the input.
    pub stories: u64,
    /// Candidate records read.
    pub records: u64,
    /// Chosen candidates among them (what the rows summarise).
    pub chosen: u64,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// The program and version that made it, e.g. `storywriter 0.1.0`.
    pub generator: String,
    /// How steps with few samples were pulled toward the global row, in words.
    pub shrinkage: String,
}

/// A whole table: one row per step plus the global row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTable {
    /// Always [`STEP_PARAMS_SCHEMA`].
    pub schema: String,
    /// Provenance.
    pub source: TableSource,
    /// Over all steps.
    pub global: StepParams,
    /// Per step, in increasing step order.
    pub steps: Vec<StepParams>,
}
