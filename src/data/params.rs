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
use std::str::FromStr;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

const BUNDLED_JSON: &str = include_str!("../../www/params/steps.json");

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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Walks a parsed table, collecting warnings and naming the field in every error.
struct Reader<'a> {
    origin: &'a str,
    vocab_size: f64,
    warnings: Vec<TableWarning>,
}

impl Reader<'_> {
    fn error(&self, path: &str, message: impl fmt::Display) -> Error {
        Error::Format(format!("{}: {path}: {message}", self.origin))
    }

    fn warn(&mut self, path: String, message: String) {
        self.warnings.push(TableWarning { path, message });
    }

    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Result<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            let what = if path.is_empty() { "(table)" } else { path };
            return Err(self.error(what, format!("expected an object, got {}", describe(value))));
        };
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.warn(join(path, key), "unknown field, ignored".into());
        }
        Ok(map)
    }

    fn field<'v>(&self, map: &'v Map<String, Value>, path: &str, key: &str) -> Result<&'v Value> {
        map.get(key)
            .ok_or_else(|| self.error(&join(path, key), "missing field"))
    }

    fn string(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<String> {
        match self.field(map, path, key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.error(
                &join(path, key),
                format!("expected a string, got {}", describe(other)),
            )),
        }
    }

    /// A non-negative integer below 2^53.
    fn integer(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<u64> {
        let value = self.field(map, path, key)?;
        match value.as_u64() {
            Some(n) if n < 1 << 53 => Ok(n),
            _ => Err(self.error(
                &join(path, key),
                format!(
                    "expected a non-negative integer below 2^53, got {}",
                    describe(value)
                ),
            )),
        }
    }

    /// A number; `null` (serde_json's NaN) reads as NaN.
    fn number(&self, map: &Map<String, Value>, path: &str, key: &str) -> Result<f64> {
        match self.field(map, path, key)? {
            Value::Null => Ok(f64::NAN),
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| self.error(&join(path, key), format!("{n} is not representable"))),
            other => Err(self.error(
                &join(path, key),
                format!("expected a number, got {}", describe(other)),
            )),
        }
    }

    fn table(&mut self, value: &Value) -> Result<StepTable> {
        let map = self.object(value, "", &["schema", "source", "global", "steps"])?;
        let schema = self.string(map, "", "schema")?;
        if schema != STEP_PARAMS_SCHEMA {
            return Err(self.error(
                "schema",
                format!("expected {STEP_PARAMS_SCHEMA:?}, got {schema:?}"),
            ));
        }
        let source = self.source(self.field(map, "", "source")?)?;
        let global = self.row(self.field(map, "", "global")?, "global", &default_row())?;
        if global.step != 0 {
            return Err(self.error(
                "global.step",
                format!("expected 0 for the global row, got {}", global.step),
            ));
        }
        let Value::Array(items) = self.field(map, "", "steps")? else {
            let got = describe(&map["steps"]);
            return Err(self.error("steps", format!("expected an array, got {got}")));
        };
        let mut steps: Vec<StepParams> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("steps[{i}]");
            let row = self.row(item, &path, &global)?;
            let previous = steps.last().map_or(0, |r| r.step);
            if row.step <= previous {
                return Err(self.error(
                    &join(&path, "step"),
                    format!(
                        "expected a step greater than {previous} (steps start at 1 and increase), got {}",
                        row.step
                    ),
                ));
            }
            steps.push(row);
        }
        Ok(StepTable {
            schema,
            source,
            global,
            steps,
        })
    }

    fn source(&mut self, value: &Value) -> Result<TableSource> {
        let path = "source";
        let map = self.object(
            value,
            path,
            &[
                "kind",
                "description",
                "stories",
                "records",
                "chosen",
                "created",
                "generator",
                "shrinkage",
            ],
        )?;
        let kind = self.string(map, path, "kind")?;
        if !SOURCE_KINDS.contains(&kind.as_str()) {
            return Err(self.error(
                "source.kind",
                format!("expected \"prior\" or \"selection-logs\", got {kind:?}"),
            ));
        }
        Ok(TableSource {
            kind,
            description: self.string(map, path, "description")?,
            stories: self.integer(map, path, "stories")?,
            records: self.integer(map, path, "records")?,
            chosen: self.integer(map, path, "chosen")?,
            created: self.string(map, path, "created")?,
            generator: self.string(map, path, "generator")?,
            shrinkage: self.string(map, path, "shrinkage")?,
        })
    }

    /// One row; NaN means and stds fall back to `fallback`'s.
    fn row(&mut self, value: &Value, path: &str, fallback: &StepParams) -> Result<StepParams> {
        let mut known = vec!["step", "count"];
        known.extend(Param::ALL.map(Param::name));
        let map = self.object(value, path, &known)?;
        let step = self.integer(map, path, "step")?;
        let step = u32::try_from(step).map_err(|_| {
            self.error(
                &join(path, "step"),
                format!("expected a step below 2^32, got {step}"),
            )
        })?;
        let count = self.integer(map, path, "count")?;
        let fallback_name = if path == "global" {
            "the default"
        } else {
            "the global row's"
        };
        let mut row = default_row();
        row.step = step;
        row.count = count;
        for param in Param::ALL {
            let summary = self.summary(
                self.field(map, path, param.name())?,
                &join(path, param.name()),
                param,
                (param.of(fallback), fallback_name),
            )?;
            *param.of_mut(&mut row) = summary;
        }
        Ok(row)
    }

    fn summary(
        &mut self,
        value: &Value,
        path: &str,
        param: Param,
        (fallback, fallback_name): (&ParamSummary, &str),
    ) -> Result<ParamSummary> {
        let map = self.object(value, path, &["mean", "std", "p10", "p50", "p90"])?;
        let (lo, hi) = match param {
            Param::TopK => (0.0, self.vocab_size),
            _ => param.bounds(),
        };
        let clamp = |reader: &mut Self, key: &str, v: f64| -> f64 {
            let c = v.clamp(lo, hi);
            if c != v {
                reader.warn(
                    join(path, key),
                    format!(
                        "{v} is outside the sane range {lo}..={hi} of {}; clamped to {c}",
                        param.name()
                    ),
                );
            }
            c
        };
        let mut mean = self.number(map, path, "mean")?;
        if mean.is_nan() {
            self.warn(
                join(path, "mean"),
                format!(
                    "not a number; replaced by {fallback_name} mean {}",
                    fallback.mean
                ),
            );
            mean = fallback.mean;
        }
        let mean = clamp(self, "mean", mean);
        let mut std = self.number(map, path, "std")?;
        if std.is_nan() {
            self.warn(
                join(path, "std"),
                format!(
                    "not a number; replaced by {fallback_name} std {}",
                    fallback.std
                ),
            );
            std = fallback.std;
        }
        let mut std_max = hi - lo;
        if param == Param::TopK {
            std_max = std_max.min((hi - mean) / 3.0);
        }
        let std_clamped = std.clamp(0.0, std_max);
        if std_clamped != std {
            let why = if param == Param::TopK && std > 0.0 {
                "a std must be >= 0 and keep mean + 3 std within the vocabulary"
            } else {
                "a std must be >= 0 and at most the width of the sane range"
            };
            self.warn(
                join(path, "std"),
                format!("{std}: {why}; clamped to {std_clamped}"),
            );
        }
        let mut percentiles = [0.0; 3];
        for (slot, key) in percentiles.iter_mut().zip(["p10", "p50", "p90"]) {
            let mut v = self.number(map, path, key)?;
            if v.is_nan() {
                self.warn(
                    join(path, key),
                    format!("not a number; replaced by the mean {mean}"),
                );
                v = mean;
            }
            *slot = clamp(self, key, v);
        }
        if !(percentiles[0] <= percentiles[1] && percentiles[1] <= percentiles[2]) {
            self.warn(
                path.to_string(),
                format!(
                    "percentiles out of order (p10 {}, p50 {}, p90 {}); sorted",
                    percentiles[0], percentiles[1], percentiles[2]
                ),
            );
            percentiles.sort_by(f64::total_cmp);
        }
        let [p10, p50, p90] = percentiles;
        Ok(ParamSummary {
            mean,
            std: std_clamped,
            p10,
            p50,
            p90,
        })
    }
}

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
        let mut reader = Reader {
            origin,
            vocab_size: vocab_size as f64,
            warnings: Vec::new(),
        };
        let table = reader.table(&value)?;
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

/// How one candidate's parameters are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The step's means.
    StepMean,
    /// Independent draws from the step's recorded spread.
    StepSample,
    /// Uniform draws in the step's p10..p90 ranges, temperature, top_k and top_p coupled.
    CoupledRandom,
    /// [`PolicyMix::fixed`] as is.
    Fixed,
}

impl Policy {
    /// Every policy, in documentation order.
    pub const ALL: [Policy; 4] = [
        Policy::StepMean,
        Policy::StepSample,
        Policy::CoupledRandom,
        Policy::Fixed,
    ];

    /// Whether its values come from the per-step table (all but `fixed`).
    pub fn uses_table(self) -> bool {
        self != Policy::Fixed
    }

    /// The policy's name: `step-mean`, `step-sample`, `coupled-random` or `fixed`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::StepMean => "step-mean",
            Policy::StepSample => "step-sample",
            Policy::CoupledRandom => "coupled-random",
            Policy::Fixed => "fixed",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown policy {s:?} (expected step-mean, step-sample, coupled-random or fixed)"
                ))
            })
    }
}

/// One policy per candidate, and the parameters for `fixed` and for the fields the table lacks.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyMix {
    /// Candidate `i` uses `policies[i]`.
    pub policies: Vec<Policy>,
    /// Used as is by `fixed`; gives min_p, greedy and stop_at_sentence_end to every candidate.
    pub fixed: SamplingParams,
}

impl Default for PolicyMix {
    /// Candidate 1 the step's means, candidates 2 and 3 draws from its spread.
    fn default() -> Self {
        Self {
            policies: vec![Policy::StepMean, Policy::StepSample, Policy::StepSample],
            fixed: SamplingParams::default(),
        }
    }
}

impl FromStr for PolicyMix {
    type Err = Error;

    /// Comma-separated policy names, one per candidate (`step-mean,step-sample,coupled-random`);
    /// `fixed` is [`SamplingParams::default`].
    fn from_str(s: &str) -> Result<Self> {
        let policies = s
            .split(',')
            .map(str::trim)
            .enumerate()
            .map(|(i, name)| {
                name.parse().map_err(|e| {
                    Error::Invalid(format!("candidate {} of policy mix {s:?}: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<Policy>>>()?;
        Ok(Self {
            policies,
            fixed: SamplingParams::default(),
        })
    }
}

/// Parameters for every candidate of `step`, reproducible from `seed`; each validated
/// (everything is clamped into the sane ranges, so [`SamplingParams::validate`] accepts it) and
/// paired with the policy that made it. See the module documentation for the policies.
pub fn candidate_params(
    table: &StepTable,
    mix: &PolicyMix,
    step: u32,
    seed: u64,
) -> Vec<(SamplingParams, Policy)> {
    let row = table.row(step);
    let top_k_limit = table.top_k_limit();
    mix.policies
        .iter()
        .enumerate()
        .map(|(i, &policy)| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            rng.set_stream(u64::from(step) << 32 | i as u64);
            let values = match policy {
                Policy::StepMean => Param::ALL.map(|p| p.of(&row).mean),
                Policy::StepSample => Param::ALL.map(|p| {
                    let s = p.of(&row);
                    s.mean + s.std * standard_normal(&mut rng).clamp(-3.0, 3.0)
                }),
                Policy::CoupledRandom => coupled_random(&row, top_k_limit, &mut rng),
                Policy::Fixed => Param::ALL.map(|p| p.value_in(&mix.fixed)),
            };
            let top_k_max = match policy {
                Policy::Fixed => f64::INFINITY,
                _ => top_k_limit,
            };
            let top_k_min = match policy {
                Policy::StepSample | Policy::CoupledRandom if row.top_k.mean.round() >= 1.0 => 1.0,
                _ => 0.0,
            };
            (
                build_params(values, &mix.fixed, top_k_min, top_k_max),
                policy,
            )
        })
        .collect()
}

/// Parameters from the table's values (in [`Param::ALL`] order) and `fixed`, all clamped into
/// the sane ranges.
fn build_params(
    values: [f64; 6],
    fixed: &SamplingParams,
    top_k_min: f64,
    top_k_max: f64,
) -> SamplingParams {
    let defaults = SamplingParams::default();
    let sane = |param: Param, v: f64| {
        let (lo, hi) = match param {
            Param::TopK => (top_k_min, top_k_max.max(top_k_min)),
            _ => param.bounds(),
        };
        if v.is_nan() {
            param.value_in(&defaults).clamp(lo, hi)
        } else {
            v.clamp(lo, hi)
        }
    };
    let [temperature, top_k, top_p, typical_p, repetition_penalty, max_new_tokens] = values;
    let min_p = if fixed.min_p.is_nan() {
        0.0
    } else {
        fixed.min_p.clamp(0.0, 1.0)
    };
    SamplingParams {
        greedy: fixed.greedy,
        temperature: sane(Param::Temperature, temperature) as f32,
        top_k: sane(Param::TopK, top_k.round()) as usize,
        top_p: sane(Param::TopP, top_p) as f32,
        min_p,
        typical_p: sane(Param::TypicalP, typical_p) as f32,
        repetition_penalty: sane(Param::RepetitionPenalty, repetition_penalty) as f32,
        max_new_tokens: sane(Param::MaxNewTokens, max_new_tokens.round()) as usize,
        stop_at_sentence_end: fixed.stop_at_sentence_end,
    }
}

/// A uniform draw in `[0, 1)` from 53 random bits.
fn uniform(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Marsaglia's polar method with the crate's deterministic `ln`).
fn standard_normal(rng: &mut ChaCha20Rng) -> f64 {
    // Each try is accepted with probability π/4: 100 failures in a row never happen in practice.
    for _ in 0..100 {
        let u = 2.0 * uniform(rng) - 1.0;
        let v = 2.0 * uniform(rng) - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * crate::shared::portable_math::ln(s) / s).sqrt();
        }
    }
    0.0
}

/// `coupled-random` values, in [`Param::ALL`] order (see the module documentation).
fn coupled_random(row: &StepParams, top_k_limit: f64, rng: &mut ChaCha20Rng) -> [f64; 6] {
    let range = |param: Param| {
        let s = param.of(row);
        let (lo, hi) = param.bounds();
        let top = if param == Param::TopK {
            hi.min(top_k_limit)
        } else {
            hi
        };
        let a = s.p10.clamp(lo, top);
        (a, s.p90.clamp(a, top) - a)
    };
    // Every value starts at the centre of its range; the independent ones are drawn uniformly.
    let mut values = Param::ALL.map(|p| {
        let (start, width) = range(p);
        start + 0.5 * width
    });
    let index = |p: Param| Param::ALL.iter().position(|&q| q == p).unwrap_or(0);
    for p in [
        Param::TypicalP,
        Param::RepetitionPenalty,
        Param::MaxNewTokens,
    ] {
        let (start, width) = range(p);
        values[index(p)] = start + width * uniform(rng);
    }
    // Coupled: drawn in this order, the last one with a non-empty range solved for; the others
    // stay at their centre (u = 0.5).
    let coupled = [Param::TopK, Param::TopP, Param::Temperature];
    let free: Vec<Param> = coupled.into_iter().filter(|&p| range(p).1 > 0.0).collect();
    let budget = COUPLED_SUM - 0.5 * (coupled.len() - free.len()) as f64;
    if let [drawn @ .., solved] = free.as_slice() {
        for _ in 0..100 {
            let mut sum = 0.0;
            let mut draws = Vec::with_capacity(drawn.len());
            for &p in drawn {
                let (start, width) = range(p);
                let mut v = start + width * uniform(rng);
                if p == Param::TopK {
                    v = v.round();
                }
                sum += (v - start) / width;
                draws.push((p, v));
            }
            let u = budget - sum;
            if (0.0..=1.0).contains(&u) {
                for (p, v) in draws {
                    values[index(p)] = v;
                }
                let (start, width) = range(*solved);
                values[index(*solved)] = start + u * width;
                break;
            }
        }
    }
    values
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

/// Like [`read_table`], but any failure falls back to the bundled table, with a warning (empty
/// path) that says what failed. Also returns the name of the table used: `spec`, or `bundled`
/// after a fallback.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_table(spec: &str, vocab_size: usize) -> (StepTable, Vec<TableWarning>, String) {
    match read_table(spec, vocab_size) {
        Ok((table, warnings)) => (table, warnings, spec.to_string()),
        Err(e) => {
            let (table, mut warnings) = StepTable::bundled_for(vocab_size);
            warnings.insert(
                0,
                TableWarning {
                    path: String::new(),
                    message: format!("cannot use the table: {e}; using the bundled table instead"),
                },
            );
            (table, warnings, "bundled".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_table_parses_without_warnings() {
        let (table, warnings) =
            StepTable::from_json(BUNDLED_JSON, "bundled", BUNDLED_VOCAB_SIZE).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(table.source.kind, "prior");
        assert_eq!(table.steps.len(), 10);
        assert!(table.steps.iter().all(|r| r.count == 0));
        assert_eq!(StepTable::bundled(), table);
    }

    #[test]
    fn to_json_pretty_round_trips() {
        let table = StepTable::bundled();
        let (again, warnings) =
            StepTable::from_json(&table.to_json_pretty(), "round trip", BUNDLED_VOCAB_SIZE)
                .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(again, table);
    }

    #[test]
    fn least_squares_slope_of_a_line() {
        let xs = [1.0, 2.0, 4.0];
        let ys = [3.0, 5.0, 9.0];
        assert_eq!(least_squares_slope(&xs, &ys), 2.0);
    }

    #[test]
    fn standard_normal_has_unit_variance() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.04, "variance {var}");
    }

    #[test]
    fn top_k_limit_stays_within_the_vocabulary() {
        let (table, warnings) = StepTable::bundled_for(50);
        assert!(warnings.iter().any(|w| w.path.ends_with("top_k.std")));
        assert!(table.top_k_limit() <= 50.0);
    }
}
