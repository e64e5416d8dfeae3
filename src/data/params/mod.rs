//! The per-step parameter table (`storywriter.step-params/1`): what writers chose at each story
//! step, summarised as mean, spread and percentiles of the chosen candidates' parameters; and the
//! parameter policies that turn it into the candidates' [`SamplingParams`].
//!
//! The web app bundles one at `www/params/steps.json`; `storywriter stats` rebuilds one from
//! selection logs. The bundled table is a documented prior (`source.kind = "prior"`, every
//! `count` 0): no selection logs exist in this repository yet.
//!
//! # Loading
//! [`StepTable::from_json`] checks every field and names it in errors (`steps[3].top_k.p90:
//! expected a number, got the string "40"`). Wrong types, missing fields, a wrong `schema`, an
//! unknown `source.kind`, a `global.step` other than 0 and steps that are not strictly
//! increasing from 1 are errors. Values outside the sane ranges below are clamped with a
//! [`TableWarning`] rather than generating garbage:
//!
//! | parameter | sane range |
//! |---|---|
//! | temperature | 0.05 ..= 5 (so ≤ 0 becomes 0.05) |
//! | top_k | 0 ..= vocabulary size |
//! | top_p, typical_p | 0.01 ..= 1 |
//! | repetition_penalty | 0.5 ..= 3 |
//! | max_new_tokens | 1 ..= [`MAX_NEW_TOKENS_CAP`] |
//!
//! A `null` (how `serde_json` writes NaN) stands for NaN: a NaN mean or std is replaced by the
//! global row's (or, in the global row, by the [`SamplingParams::default`] value with std 0), a
//! NaN percentile by the mean. A negative std becomes 0; a std wider than the range is cut to its
//! width, and top_k's std so that mean + 3 std stays within the vocabulary. Percentiles out of
//! order are sorted. Unknown fields are ignored with a warning.
//!
//! # Rows beyond the table
//! [`StepTable::row`] gives the row of a tabulated step as is. Otherwise (derived rows have
//! `count` 0 and the requested `step`):
//! - step 0, or a table without steps: the global row;
//! - a step before the first row: the first row;
//! - a gap between rows: linear interpolation of every summary between the neighbouring rows;
//! - a step `n` after the last row `L`: the last [`TREND_ROWS`] rows' trend. For each parameter,
//!   the least-squares slope of the rows' means over their steps is extrapolated for
//!   `min(n − L, TREND_HORIZON)` steps (so the trend flattens out [`TREND_HORIZON`] steps after
//!   the table), and the mean is kept inside the global row's p10..p90 band (widened to include
//!   the last row's mean). The percentiles move with the mean; the std is the last row's. With
//!   fewer than two rows there is no trend and the global row is used.
//!
//! # Policies
//! [`candidate_params`] gives each candidate of a step its parameters from its [`Policy`]:
//! - `step-mean`: the row's means (top_k and max_new_tokens rounded);
//! - `step-sample`: each parameter drawn independently from a normal distribution with the
//!   row's mean and std, truncated at ±3 std, then clamped to the sane ranges;
//! - `coupled-random`: each parameter uniform in its tolerable range, the row's p10..p90, with
//!   temperature, top_k and top_p coupled linearly. Writing `u = (value − p10) / (p90 − p10)`
//!   for the position of a value in its range (0 = cautious end, 1 = adventurous end), every draw
//!   satisfies `u(temperature) + u(top_k) + u(top_p) = COUPLED_SUM` (1.5, the centre): a spike
//!   in one is compensated by the others, so a high top_k forces a lower temperature. The draw is
//!   uniform over that plane inside the unit cube (top_k and top_p drawn, top_k rounded,
//!   temperature solved for, rejected and redrawn when it falls outside its range). A parameter
//!   whose range is empty (p10 = p90) sits at its centre and the others carry the sum.
//!   typical_p, repetition_penalty and max_new_tokens are drawn independently;
//! - `fixed`: [`PolicyMix::fixed`] as is (clamped to the sane ranges).
//!
//! Fields the table does not hold (min_p, greedy, stop_at_sentence_end) come from
//! [`PolicyMix::fixed`]. Drawn top_k values are at least 1 (0 would turn top-k off, the opposite
//! of a small k) unless the row's mean rounds to 0, and at most the table's largest top_k
//! `mean + 3 std` or p90, which loading keeps within the vocabulary.
//!
//! # Determinism
//! Candidate `i` (0-based) of step `n` draws from the ChaCha20 stream `n << 32 | i` keyed by
//! `seed_from_u64(seed)`, so candidates and steps are independent and changing one candidate's
//! policy leaves the others unchanged. Only IEEE basic operations, `sqrt` (exactly rounded) and
//! the crate's own platform-independent `ln` are used, so native and wasm32 give bit-identical
//! parameters for the same table and seed.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::shared::SamplingParams;

/// The schema tag every table carries.
pub const STEP_PARAMS_SCHEMA: &str = "storywriter.step-params/1";

/// The allowed values of `source.kind`.
pub const SOURCE_KINDS: [&str; 2] = ["prior", "selection-logs"];

/// Largest `max_new_tokens` a table or policy may give a candidate.
pub const MAX_NEW_TOKENS_CAP: usize = 256;

/// Vocabulary size [`StepTable::bundled`] is checked against (BLOOM's).
pub const BUNDLED_VOCAB_SIZE: usize = 250_880;

/// How many of the last rows give the trend beyond the table.
pub const TREND_ROWS: usize = 5;

/// How many steps past the last row the trend is extrapolated before it flattens out.
pub const TREND_HORIZON: u32 = 5;

/// The constant sum of the coupled positions of temperature, top_k and top_p in
/// `coupled-random` (see the module documentation).
pub const COUPLED_SUM: f64 = 1.5;

const BUNDLED_JSON: &str = include_str!("../../../www/params/steps.json");

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

/// A value that loading changed (clamped, replaced or ignored), or a table that could not be used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableWarning {
    /// The field, e.g. `steps[3].temperature.mean`; empty when it concerns the whole table.
    pub path: String,
    /// What was wrong and what was done about it.
    pub message: String,
}

impl fmt::Display for TableWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The tabulated parameters, to loop over a row's summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `temperature`.
    Temperature,
    /// `top_k`.
    TopK,
    /// `top_p`.
    TopP,
    /// `typical_p`.
    TypicalP,
    /// `repetition_penalty`.
    RepetitionPenalty,
    /// `max_new_tokens`.
    MaxNewTokens,
}

impl Param {
    /// Every parameter, in the table's field order.
    pub const ALL: [Param; 6] = [
        Param::Temperature,
        Param::TopK,
        Param::TopP,
        Param::TypicalP,
        Param::RepetitionPenalty,
        Param::MaxNewTokens,
    ];

    /// Its field name in the table and in [`SamplingParams`].
    pub fn name(self) -> &'static str {
        match self {
            Param::Temperature => "temperature",
            Param::TopK => "top_k",
            Param::TopP => "top_p",
            Param::TypicalP => "typical_p",
            Param::RepetitionPenalty => "repetition_penalty",
            Param::MaxNewTokens => "max_new_tokens",
        }
    }

    /// The sane range; top_k's upper end is the vocabulary size, unbounded here.
    pub(crate) fn bounds(self) -> (f64, f64) {
        match self {
            Param::Temperature => (0.05, 5.0),
            Param::TopK => (0.0, f64::INFINITY),
            Param::TopP | Param::TypicalP => (0.01, 1.0),
            Param::RepetitionPenalty => (0.5, 3.0),
            Param::MaxNewTokens => (1.0, MAX_NEW_TOKENS_CAP as f64),
        }
    }

    /// The parameter named `name` (a field name, e.g. `top_k`).
    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its summary in `row`.
    pub fn of(self, row: &StepParams) -> &ParamSummary {
        match self {
            Param::Temperature => &row.temperature,
            Param::TopK => &row.top_k,
            Param::TopP => &row.top_p,
            Param::TypicalP => &row.typical_p,
            Param::RepetitionPenalty => &row.repetition_penalty,
            Param::MaxNewTokens => &row.max_new_tokens,
        }
    }

    fn of_mut(self, row: &mut StepParams) -> &mut ParamSummary {
        match self {
            Param::Temperature => &mut row.temperature,
            Param::TopK => &mut row.top_k,
            Param::TopP => &mut row.top_p,
            Param::TypicalP => &mut row.typical_p,
            Param::RepetitionPenalty => &mut row.repetition_penalty,
            Param::MaxNewTokens => &mut row.max_new_tokens,
        }
    }

    /// Its value in `params`, as a number.
    pub fn value_in(self, params: &SamplingParams) -> f64 {
        match self {
            Param::Temperature => params.temperature.into(),
            Param::TopK => params.top_k as f64,
            Param::TopP => params.top_p.into(),
            Param::TypicalP => params.typical_p.into(),
            Param::RepetitionPenalty => params.repetition_penalty.into(),
            Param::MaxNewTokens => params.max_new_tokens as f64,
        }
    }
}

/// A row whose every summary is `f(param)`.
fn row_from(step: u32, count: u64, mut f: impl FnMut(Param) -> ParamSummary) -> StepParams {
    StepParams {
        step,
        count,
        temperature: f(Param::Temperature),
        top_k: f(Param::TopK),
        top_p: f(Param::TopP),
        typical_p: f(Param::TypicalP),
        repetition_penalty: f(Param::RepetitionPenalty),
        max_new_tokens: f(Param::MaxNewTokens),
    }
}

/// The row a NaN in the global row falls back to: [`SamplingParams::default`], std 0.
fn default_row() -> StepParams {
    let defaults = SamplingParams::default();
    row_from(0, 0, |param| {
        let v = param.value_in(&defaults);
        ParamSummary {
            mean: v,
            std: 0.0,
            p10: v,
            p50: v,
            p90: v,
        }
    })
}

mod policy;
mod read;

pub use policy::{candidate_params, Policy, PolicyMix};
use read::Reader;
#[cfg(test)]
mod tests;

impl StepTable {
    /// Parses and checks a table; `origin` (file name or URL) prefixes error messages.
    ///
    /// Errors name the field and what was expected; out-of-range values are clamped with a
    /// warning (see the module documentation), top_k against `vocab_size`.
    pub fn from_json(
        text: &str,
        origin: &str,
        vocab_size: usize,
    ) -> Result<(StepTable, Vec<TableWarning>)> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Format(format!("{origin}: not valid JSON: {e}")))?;
        Self::from_value(&value, origin, vocab_size)
    }

    /// Like [`Self::from_json`], for a table already parsed (the JavaScript package's tables
    /// arrive as objects).
    pub fn from_value(
        value: &Value,
        origin: &str,
        vocab_size: usize,
    ) -> Result<(StepTable, Vec<TableWarning>)> {
        let mut reader = Reader {
            origin,
            vocab_size: vocab_size as f64,
            warnings: Vec::new(),
        };
        let table = reader.table(value)?;
        Ok((table, reader.warnings))
    }

    /// The table bundled at `www/params/steps.json`, checked against [`BUNDLED_VOCAB_SIZE`].
    pub fn bundled() -> StepTable {
        Self::bundled_for(BUNDLED_VOCAB_SIZE).0
    }

    /// The bundled table checked against another vocabulary size (top_k may be clamped).
    pub fn bundled_for(vocab_size: usize) -> (StepTable, Vec<TableWarning>) {
        Self::from_json(BUNDLED_JSON, "www/params/steps.json", vocab_size)
            .expect("the bundled table is valid (checked by a unit test)")
    }

    /// The row for `step`, with the fallbacks of the module documentation for steps the table
    /// does not hold.
    pub fn row(&self, step: u32) -> Cow<'_, StepParams> {
        let derived = |row: &StepParams| {
            Cow::Owned(StepParams {
                step,
                count: 0,
                ..row.clone()
            })
        };
        if step == 0 {
            return Cow::Borrowed(&self.global);
        }
        match self.steps.binary_search_by_key(&step, |r| r.step) {
            Ok(i) => Cow::Borrowed(&self.steps[i]),
            Err(0) => derived(self.steps.first().unwrap_or(&self.global)),
            Err(i) if i < self.steps.len() => {
                Cow::Owned(interpolate(&self.steps[i - 1], &self.steps[i], step))
            }
            Err(_) => match self.trend(step) {
                Some(row) => Cow::Owned(row),
                None => derived(&self.global),
            },
        }
    }

    /// The last rows' trend extrapolated to `step` (after the last row); `None` with < 2 rows.
    fn trend(&self, step: u32) -> Option<StepParams> {
        let tail = &self.steps[self.steps.len().saturating_sub(TREND_ROWS)..];
        let [.., _, last] = tail else {
            return None;
        };
        let horizon = f64::from(step.saturating_sub(last.step).min(TREND_HORIZON));
        let xs: Vec<f64> = tail.iter().map(|r| f64::from(r.step)).collect();
        Some(row_from(step, 0, |param| {
            let ys: Vec<f64> = tail.iter().map(|r| param.of(r).mean).collect();
            let end = param.of(last);
            let global = param.of(&self.global);
            let target = end.mean + least_squares_slope(&xs, &ys) * horizon;
            let mean = target.clamp(global.p10.min(end.mean), global.p90.max(end.mean));
            let delta = mean - end.mean;
            let (lo, hi) = param.bounds();
            ParamSummary {
                mean,
                std: end.std,
                p10: (end.p10 + delta).clamp(lo, hi),
                p50: (end.p50 + delta).clamp(lo, hi),
                p90: (end.p90 + delta).clamp(lo, hi),
            }
        }))
    }

    /// The largest top_k a policy may draw: the table's largest top_k `mean + 3 std` or p90.
    pub(crate) fn top_k_limit(&self) -> f64 {
        std::iter::once(&self.global)
            .chain(&self.steps)
            .map(|r| (r.top_k.mean + 3.0 * r.top_k.std).max(r.top_k.p90))
            .fold(0.0, f64::max)
            .floor()
    }

    /// The table as indented JSON (the format [`StepTable::from_json`] reads).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a StepTable always serializes")
    }
}

fn interpolate(a: &StepParams, b: &StepParams, step: u32) -> StepParams {
    let t = f64::from(step - a.step) / f64::from(b.step - a.step);
    let lerp = |x: f64, y: f64| x + (y - x) * t;
    row_from(step, 0, |param| {
        let (x, y) = (param.of(a), param.of(b));
        ParamSummary {
            mean: lerp(x.mean, y.mean),
            std: lerp(x.std, y.std),
            p10: lerp(x.p10, y.p10),
            p50: lerp(x.p50, y.p50),
            p90: lerp(x.p90, y.p90),
        }
    })
}

/// Slope of the least-squares line through `(xs, ys)`; the xs are distinct.
fn least_squares_slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let x_mean = xs.iter().sum::<f64>() / n;
    let y_mean = ys.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        num += (x - x_mean) * (y - y_mean);
        den += (x - x_mean) * (x - x_mean);
    }
    num / den
}

/// Reads a table from `spec`: `bundled`, a file path or an http(s) URL (fetched with a
/// [`URL_TIMEOUT`] timeout). Errors name the spec.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_table(spec: &str, vocab_size: usize) -> Result<(StepTable, Vec<TableWarning>)> {
    if spec == "bundled" {
        return Ok(StepTable::bundled_for(vocab_size));
    }
    let text = if spec.starts_with("http://") || spec.starts_with("https://") {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(URL_TIMEOUT))
            .build()
            .into();
        agent
            .get(spec)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string())
            .map_err(|e| Error::Invalid(format!("{spec}: {e}")))?
    } else {
        std::fs::read_to_string(spec).map_err(|e| Error::io(spec, e))?
    };
    StepTable::from_json(&text, spec, vocab_size)
}

/// How long fetching a table from a URL may take in all.
#[cfg(not(target_arch = "wasm32"))]
pub const URL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
