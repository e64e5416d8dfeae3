//! Rebuilding the per-step parameter table ([`StepTable`]) from selection logs, one record at a
//! time: nothing of a record is kept but a 64-bit hash of its id and of its story's id (see
//! *Memory*).
//!
//! # Input
//! [`SelectionRecord::from_json`] reads what the table needs — story id, step, chosen flag and
//! the six tabulated parameters — from our [`CandidateRecord`](crate::data::records::CandidateRecord)s
//! and from foreign logs, MongoDB `mongoexport` output included:
//! - field spellings: `record_id|recordId|_id|id`, `story_id|storyId|storyID|story`,
//!   `step|step_number|stepNumber|step_index|stepIndex`,
//!   `chosen|selected|picked|is_chosen|isChosen`, and for the parameters those in
//!   [`PARAM_SPELLINGS`]; parameters are looked up first in a nested `params`, `parameters` or
//!   `sampling` object, then at the top level;
//! - extended JSON: `{"$numberInt": ..}`, `{"$numberLong": ..}`, `{"$numberDouble": ..}`,
//!   `{"$numberDecimal": ..}` wherever a number is expected, `{"$oid": ..}` (or an object with
//!   `_id`/`id`) as a record or story id; fields the table does not need (`$date`s, texts) are
//!   not read;
//! - numbers may also be written as strings (`"0.7"`); flags may be `true`/`false`, `0`/`1` or
//!   those as strings; a step is an integer ≥ 1 (taken as 1-based whatever its field is called);
//! - a missing parameter takes its [`SamplingParams::default`] value, as our records' own reader
//!   does; a value that is not a finite number (`"NaN"`, `"Infinity"`, text) rejects the record
//!   with an error naming the field, and so does a missing story id, step or chosen flag (the
//!   record id is optional).
//!
//! [`ReadFields`] parses a record keeping only the fields read, which is faster than a whole
//! [`Value`] for big records such as ours.
//!
//! # Repeated copies
//! A record may appear more than once: `storywriter write` appends each candidate when it is
//! generated and again, chosen, when it is picked, and logs may overlap. Records with the same
//! id count once in `source.records`, and as chosen (once) if any copy is chosen, whatever the
//! order of the copies; the later copies are counted in [`StatsBuilder::copies`]. Records
//! without an id are all counted.
//!
//! # The table
//! Rows summarise the *chosen* records; the other records count only in `source.records` and
//! `source.stories`. The `global` row (step 0) covers every chosen record; a row per step
//! `1..=max_steps` ([`DEFAULT_MAX_STEPS`]) that has at least one chosen record. Steps with no
//! chosen record get no row ([`StepTable::row`] interpolates or extrapolates them from their
//! neighbours); chosen records at steps above `max_steps` count only in the global row (see
//! [`StatsBuilder::untabulated`]).
//!
//! - `mean`, `std` (population): Welford's online algorithm, exact up to rounding.
//! - `p10`, `p50`, `p90`: the value at 0-based rank ⌊q·(n−1)⌋ of the sorted values (lower
//!   nearest rank). Exact while a parameter has at most [`EXACT_DISTINCT_VALUES`] (256) distinct
//!   values at that step (sliders, integer parameters, fixed policies): their counts are kept.
//!   Past that, the counts move into a DDSketch (`sketches-ddsketch`) with relative accuracy
//!   [`PERCENTILE_RELATIVE_ACCURACY`] (0.5 %): the estimate is within 0.5 % of the exact value
//!   (values below 1e-9 in magnitude count as exactly 0), clamped to the observed minimum and
//!   maximum.
//!
//! # Shrinkage
//! A step with few chosen records is pulled toward the global row by [`shrink`], with prior
//! strength `k` ([`DEFAULT_PRIOR_STRENGTH`], 20; 0 turns it off). For a step with `n` chosen
//! records the step's own numbers get weight `w = n/(n+k)` and the global row's `1−w`:
//! `mean' = w·mean + (1−w)·global_mean`; the variance is that of the mixture,
//! `var' = w·var + (1−w)·global_var + w·(1−w)·(mean − global_mean)²`, `std' = √var'`;
//! each percentile `p' = w·p + (1−w)·global_p`. `count` stays the true `n`.
//!
//! # Memory
//! Per tabulated step (and for the global row), per parameter: at most 256 exact counts
//! (about 10 KiB), or a sketch of at most 2,048 bins of 8 bytes (in practice a few hundred:
//! 0.5 % buckets on a log scale); so at most about 100 KiB a step, for at most `max_steps`
//! steps. Distinct stories, and record ids for the repeated copies, are counted exactly by
//! keeping a 64-bit hash of each: about 10–20 bytes per distinct story and per distinct record
//! id (≈ 25 MB for a million records; two ids collide with odds of about n²/2⁶⁵).

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sketches_ddsketch::{Config, DDSketch};

use crate::data::params::{ParamSummary, StepParams, StepTable, TableSource, STEP_PARAMS_SCHEMA};
use crate::error::{Error, Result};
use crate::shared::SamplingParams;

/// Default pseudo-count `k` of [`shrink`]: a step with 20 chosen records is half its own data,
/// half the global row.
pub const DEFAULT_PRIOR_STRENGTH: f64 = 20.0;

/// Default number of steps tabulated (steps `1..=1000`).
pub const DEFAULT_MAX_STEPS: u32 = 1000;

/// Relative accuracy of the percentiles: within this fraction of the exact order statistic.
pub const PERCENTILE_RELATIVE_ACCURACY: f64 = 0.005;

/// Distinct values of a parameter (per step) counted exactly before switching to a sketch.
pub const EXACT_DISTINCT_VALUES: usize = 256;

/// Bins per sketch before the lowest ones merge (never reached by these parameters: 2,048
/// bins of 0.5 % span a factor of 10^8).
const SKETCH_MAX_BINS: u32 = 2048;

/// Values of smaller magnitude count as exactly 0 in the sketches.
const SKETCH_MIN_VALUE: f64 = 1e-9;

/// The percentiles every summary carries.
const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Accepted field names of the six tabulated parameters, in table order: the table's own name
/// first, then foreign spellings.
pub const PARAM_SPELLINGS: [&[&str]; 6] = [
    &["temperature", "temp"],
    &["top_k", "topK", "topk"],
    &["top_p", "topP", "topp"],
    &["typical_p", "typicalP", "typical"],
    &[
        "repetition_penalty",
        "repetitionPenalty",
        "rep_penalty",
        "repeat_penalty",
        "repeatPenalty",
    ],
    &[
        "max_new_tokens",
        "maxNewTokens",
        "max_tokens",
        "maxTokens",
        "length",
    ],
];

const RECORD_ID_SPELLINGS: &[&str] = &["record_id", "recordId", "_id", "id"];
const STORY_SPELLINGS: &[&str] = &["story_id", "storyId", "storyID", "story"];
const STEP_SPELLINGS: &[&str] = &[
    "step",
    "step_number",
    "stepNumber",
    "step_index",
    "stepIndex",
];
const CHOSEN_SPELLINGS: &[&str] = &["chosen", "selected", "picked", "is_chosen", "isChosen"];
const PARAMS_CONTAINERS: &[&str] = &["params", "parameters", "sampling"];

/// The six tabulated parameters of one record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamValues {
    /// Sampling temperature.
    pub temperature: f64,
    /// Top-k (0 = off).
    pub top_k: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Typical-sampling mass.
    pub typical_p: f64,
    /// Repetition penalty.
    pub repetition_penalty: f64,
    /// Length in tokens.
    pub max_new_tokens: f64,
}

impl ParamValues {
    fn from_array(values: [f64; 6]) -> Self {
        let [temperature, top_k, top_p, typical_p, repetition_penalty, max_new_tokens] = values;
        Self {
            temperature,
            top_k,
            top_p,
            typical_p,
            repetition_penalty,
            max_new_tokens,
        }
    }

    fn to_array(self) -> [f64; 6] {
        [
            self.temperature,
            self.top_k,
            self.top_p,
            self.typical_p,
            self.repetition_penalty,
            self.max_new_tokens,
        ]
    }
}

impl ParamValues {
    /// The tabulated values of a candidate's sampling parameters.
    pub fn from_params(p: &SamplingParams) -> Self {
        Self {
            temperature: f64::from(p.temperature),
            top_k: p.top_k as f64,
            top_p: f64::from(p.top_p),
            typical_p: f64::from(p.typical_p),
            repetition_penalty: f64::from(p.repetition_penalty),
            max_new_tokens: p.max_new_tokens as f64,
        }
    }
}

impl Default for ParamValues {
    /// The [`SamplingParams::default`] values.
    fn default() -> Self {
        Self::from_params(&SamplingParams::default())
    }
}

/// What the table needs from one candidate record.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionRecord {
    /// Its own id, when it has one (an `$oid` or a number as its text).
    pub record_id: Option<String>,
    /// The story it belongs to (an `$oid` or a number as its text).
    pub story_id: String,
    /// Story step, from 1.
    pub step: u32,
    /// Whether the writer took this candidate.
    pub chosen: bool,
    /// Its sampling parameters.
    pub params: ParamValues,
}

impl SelectionRecord {
    /// Reads a record in any accepted spelling (see the [module documentation](self)); the error
    /// names the field at fault.
    pub fn from_json(value: &Value) -> Result<Self> {
        let Value::Object(record) = value else {
            return Err(Error::Invalid(format!(
                "a record must be a JSON object, not {}",
                shown(value)
            )));
        };
        let record_id = match lookup(record, RECORD_ID_SPELLINGS) {
            Some((name, value)) => Some(identifier(value).map_err(|p| field_error(name, p))?),
            None => None,
        };
        let story_id = required(record, STORY_SPELLINGS, identifier)?;
        let step = required(record, STEP_SPELLINGS, step)?;
        let chosen = required(record, CHOSEN_SPELLINGS, flag)?;
        let nested = PARAMS_CONTAINERS
            .iter()
            .find_map(|name| record.get(*name).and_then(Value::as_object));
        let mut params = ParamValues::default().to_array();
        for (slot, spellings) in params.iter_mut().zip(PARAM_SPELLINGS) {
            let found = nested
                .and_then(|inner| lookup(inner, spellings))
                .or_else(|| lookup(record, spellings));
            if let Some((name, value)) = found {
                *slot = number(value).map_err(|problem| field_error(name, problem))?;
            }
        }
        Ok(Self {
            record_id,
            story_id,
            step,
            chosen,
            params: ParamValues::from_array(params),
        })
    }
}

/// The first of `spellings` present (and not null) in `object`, with the name it was found under.
fn lookup<'a>(
    object: &'a Map<String, Value>,
    spellings: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    spellings.iter().find_map(|name| match object.get(*name) {
        None | Some(Value::Null) => None,
        Some(value) => Some((*name, value)),
    })
}

/// Reads a field that must be there, in one of its spellings.
fn required<T>(
    record: &Map<String, Value>,
    spellings: &[&'static str],
    read: fn(&Value) -> std::result::Result<T, String>,
) -> Result<T> {
    let (name, value) = lookup(record, spellings).ok_or_else(|| {
        Error::Invalid(format!(
            "no `{}` field (nor {})",
            spellings[0],
            spellings[1..].join(", ")
        ))
    })?;
    read(value).map_err(|problem| field_error(name, problem))
}

fn field_error(name: &str, problem: String) -> Error {
    Error::Invalid(format!("`{name}`: {problem}"))
}

/// Whether [`SelectionRecord::from_json`] reads a top-level field of this name.
fn is_read(name: &str) -> bool {
    [
        RECORD_ID_SPELLINGS,
        STORY_SPELLINGS,
        STEP_SPELLINGS,
        CHOSEN_SPELLINGS,
        PARAMS_CONTAINERS,
    ]
    .into_iter()
    .chain(PARAM_SPELLINGS)
    .any(|spellings| spellings.contains(&name))
}

/// Deserializes a JSON value for [`SelectionRecord::from_json`] without building what it does
/// not read: of an object, only the fields it looks at are kept (others are skipped without
/// being built, which reads our records about twice as fast); any other value is kept whole, so
/// that the normaliser can say what it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadFields;

impl<'de> DeserializeSeed<'de> for ReadFields {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadFields {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if is_read(&key) {
                kept.insert(key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A JSON value as text for a message, cut at 60 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// The wrapped value of a one-key extended-JSON object (`{"$numberInt": "5"}` → `"5"`).
fn extended<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    match value {
        Value::Object(map) if map.len() == 1 => keys.iter().find_map(|key| map.get(*key)),
        _ => None,
    }
}

/// A finite number: JSON number, numeric string or extended-JSON number.
fn number(value: &Value) -> std::result::Result<f64, String> {
    const NUMBER_KEYS: [&str; 4] = [
        "$numberInt",
        "$numberLong",
        "$numberDouble",
        "$numberDecimal",
    ];
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => {
            return extended(value, &NUMBER_KEYS)
                .map(number)
                .unwrap_or_else(|| Err(format!("{} is not a number", shown(value))))
        }
    };
    match parsed {
        Some(x) if x.is_finite() => Ok(x),
        Some(_) => Err(format!("{} is not a finite number", shown(value))),
        None => Err(format!("{} is not a number", shown(value))),
    }
}

/// A step: an integer from 1 to 2^32 − 1.
fn step(value: &Value) -> std::result::Result<u32, String> {
    let x = number(value)?;
    if x.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&x) {
        Ok(x as u32)
    } else {
        Err(format!(
            "{} is not a step (an integer from 1)",
            shown(value)
        ))
    }
}

/// A flag: `true`/`false`, `1`/`0`, or those as strings.
fn flag(value: &Value) -> std::result::Result<bool, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => match number(value) {
            Ok(1.0) => Some(true),
            Ok(0.0) => Some(false),
            _ => None,
        },
    };
    parsed.ok_or_else(|| format!("{} is not a flag (true/false or 1/0)", shown(value)))
}

/// A record or story id: a non-empty string, a number, `{"$oid": ..}`, an extended-JSON
/// integer, or an object with `_id` or `id`.
fn identifier(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(map) => ["$oid", "$numberInt", "$numberLong", "_id", "id"]
            .iter()
            .find_map(|key| map.get(*key))
            .map(identifier)
            .unwrap_or_else(|| Err(format!("{} is not an id", shown(value)))),
        _ => Err(format!("{} is not an id", shown(value))),
    }
}

/// How [`StatsBuilder`] tabulates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsOptions {
    /// Pseudo-count `k` of [`shrink`]; 0 turns shrinkage off.
    pub prior_strength: f64,
    /// Steps `1..=max_steps` get rows; later ones count only in the global row.
    pub max_steps: u32,
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            prior_strength: DEFAULT_PRIOR_STRENGTH,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

/// Exact counts of distinct values while there are few, a DDSketch after that.
#[derive(Clone)]
enum Distribution {
    Exact(BTreeMap<OrderedValue, u64>),
    Sketch(DDSketch),
}

/// A finite `f64` ordered by value, as a map key.
#[derive(Clone, Copy, PartialEq)]
struct OrderedValue(f64);

impl Eq for OrderedValue {}

impl PartialOrd for OrderedValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Distribution {
    fn add(&mut self, x: f64) {
        match self {
            Self::Exact(counts) => {
                *counts.entry(OrderedValue(x)).or_insert(0) += 1;
                if counts.len() > EXACT_DISTINCT_VALUES {
                    let mut sketch = DDSketch::new(Config::new(
                        PERCENTILE_RELATIVE_ACCURACY,
                        SKETCH_MAX_BINS,
                        SKETCH_MIN_VALUE,
                    ));
                    for (value, count) in counts.iter() {
                        sketch.add_with_count(value.0, *count);
                    }
                    *self = Self::Sketch(sketch);
                }
            }
            Self::Sketch(sketch) => sketch.add(x),
        }
    }

    /// The value at rank ⌊q·(n−1)⌋ of `n` values: exact, or the sketch's estimate clamped to
    /// the observed range. `None` when empty.
    fn percentile(&self, q: f64, n: u64) -> Option<f64> {
        match self {
            Self::Exact(counts) => {
                let rank = (q * (n.checked_sub(1)? as f64)) as u64;
                let mut seen = 0;
                counts.iter().find_map(|(value, count)| {
                    seen += count;
                    (seen > rank).then_some(value.0)
                })
            }
            Self::Sketch(sketch) => {
                let estimate = sketch.quantile(q).ok()??;
                Some(estimate.clamp(sketch.min()?, sketch.max()?))
            }
        }
    }
}

/// Running summaries of the six parameters over a set of chosen records.
#[derive(Clone)]
struct Accumulator {
    count: u64,
    mean: [f64; 6],
    /// Sum of squared deviations from the running mean (Welford).
    m2: [f64; 6],
    distributions: [Distribution; 6],
}

impl Accumulator {
    fn new() -> Self {
        Self {
            count: 0,
            mean: [0.0; 6],
            m2: [0.0; 6],
            distributions: std::array::from_fn(|_| Distribution::Exact(BTreeMap::new())),
        }
    }

    fn add(&mut self, values: [f64; 6]) {
        self.count += 1;
        let n = self.count as f64;
        for (i, x) in values.into_iter().enumerate() {
            let delta = x - self.mean[i];
            self.mean[i] += delta / n;
            self.m2[i] += delta * (x - self.mean[i]);
            self.distributions[i].add(x);
        }
    }

    fn summary(&self, i: usize) -> ParamSummary {
        let mean = self.mean[i];
        // Rows are only made from non-empty accumulators, which always have percentiles.
        let percentile = |q| {
            self.distributions[i]
                .percentile(q, self.count)
                .unwrap_or(mean)
        };
        let [p10, p50, p90] = QUANTILES.map(percentile);
        ParamSummary {
            mean,
            std: (self.m2[i] / self.count as f64).max(0.0).sqrt(),
            p10,
            p50,
            p90,
        }
    }

    fn row(&self, step: u32) -> StepParams {
        StepParams {
            step,
            count: self.count,
            temperature: self.summary(0),
            top_k: self.summary(1),
            top_p: self.summary(2),
            typical_p: self.summary(3),
            repetition_penalty: self.summary(4),
            max_new_tokens: self.summary(5),
        }
    }
}

/// Pulls a step's row toward the global row with prior strength `k` (see the
/// [module documentation](self)): weight `n/(n+k)` on the step's own numbers; `count` unchanged.
pub fn shrink(row: &StepParams, global: &StepParams, prior_strength: f64) -> StepParams {
    let n = row.count as f64;
    if prior_strength <= 0.0 || n + prior_strength <= 0.0 {
        return row.clone();
    }
    let w = n / (n + prior_strength);
    let mix = |own: &ParamSummary, all: &ParamSummary| {
        let variance = w * own.std * own.std
            + (1.0 - w) * all.std * all.std
            + w * (1.0 - w) * (own.mean - all.mean).powi(2);
        ParamSummary {
            mean: w * own.mean + (1.0 - w) * all.mean,
            std: variance.sqrt(),
            p10: w * own.p10 + (1.0 - w) * all.p10,
            p50: w * own.p50 + (1.0 - w) * all.p50,
            p90: w * own.p90 + (1.0 - w) * all.p90,
        }
    };
    StepParams {
        step: row.step,
        count: row.count,
        temperature: mix(&row.temperature, &global.temperature),
        top_k: mix(&row.top_k, &global.top_k),
        top_p: mix(&row.top_p, &global.top_p),
        typical_p: mix(&row.typical_p, &global.typical_p),
        repetition_penalty: mix(&row.repetition_penalty, &global.repetition_penalty),
        max_new_tokens: mix(&row.max_new_tokens, &global.max_new_tokens),
    }
}

/// Builds a [`StepTable`] from records fed one at a time, in memory bounded by the number of
/// tabulated steps and distinct stories (see the [module documentation](self)).
#[derive(Clone)]
pub struct StatsBuilder {
    options: StatsOptions,
    global: Accumulator,
    steps: BTreeMap<u32, Accumulator>,
    story_hashes: HashSet<u64>,
    record_hashes: HashSet<u64>,
    chosen_hashes: HashSet<u64>,
    records: u64,
    copies: u64,
    untabulated: u64,
}

impl StatsBuilder {
    /// An empty builder; the prior strength must be finite and ≥ 0, `max_steps` ≥ 1.
    pub fn new(options: StatsOptions) -> Result<Self> {
        if !(options.prior_strength.is_finite() && options.prior_strength >= 0.0) {
            return Err(Error::Invalid(format!(
                "prior strength {} must be a finite number ≥ 0",
                options.prior_strength
            )));
        }
        if options.max_steps == 0 {
            return Err(Error::Invalid("max steps must be at least 1".into()));
        }
        Ok(Self {
            options,
            global: Accumulator::new(),
            steps: BTreeMap::new(),
            story_hashes: HashSet::new(),
            record_hashes: HashSet::new(),
            chosen_hashes: HashSet::new(),
            records: 0,
            copies: 0,
            untabulated: 0,
        })
    }

    /// Counts one record; a chosen one also enters its step's row and the global row. A
    /// repeated copy of a record id counts only if it is the first chosen copy.
    pub fn add(&mut self, record: &SelectionRecord) {
        let id_hash = record.record_id.as_deref().map(hash);
        let new = id_hash.is_none_or(|h| self.record_hashes.insert(h));
        if new {
            self.records += 1;
            self.story_hashes.insert(hash(&record.story_id));
        } else {
            self.copies += 1;
        }
        if !record.chosen || id_hash.is_some_and(|h| !self.chosen_hashes.insert(h)) {
            return;
        }
        let values = record.params.to_array();
        self.global.add(values);
        if record.step <= self.options.max_steps {
            self.steps
                .entry(record.step)
                .or_insert_with(Accumulator::new)
                .add(values);
        } else {
            self.untabulated += 1;
        }
    }

    /// Reads a record with [`SelectionRecord::from_json`] and adds it; a record that cannot be
    /// read is left out and its error returned (the caller counts and reports it).
    pub fn add_json(&mut self, value: &Value) -> Result<()> {
        let record = SelectionRecord::from_json(value)?;
        self.add(&record);
        Ok(())
    }

    /// Distinct records added so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Repeated copies of a record id among the records added (see the
    /// [module documentation](self)).
    pub fn copies(&self) -> u64 {
        self.copies
    }

    /// Chosen records among them.
    pub fn chosen(&self) -> u64 {
        self.global.count
    }

    /// Chosen records at steps above `max_steps` (in the global row only).
    pub fn untabulated(&self) -> u64 {
        self.untabulated
    }

    /// The table: global row, shrunk step rows, and `source` (kind `selection-logs`, the given
    /// description, counts, creation time, generator, shrinkage rule). Fails when no record was
    /// chosen.
    pub fn finish(self, description: &str) -> Result<StepTable> {
        if self.global.count == 0 {
            return Err(Error::Invalid(format!(
                "no chosen candidate among the {} records read: nothing to tabulate",
                self.records
            )));
        }
        let global = self.global.row(0);
        let k = self.options.prior_strength;
        let steps = self
            .steps
            .iter()
            .map(|(step, accumulator)| shrink(&accumulator.row(*step), &global, k))
            .collect();
        let rule = if k > 0.0 {
            format!(
                "each step's mean, variance and percentiles mixed with the global row's, weight \
                 n/(n+k) on the step's own (n = its chosen candidates, k = {k}); variance of the \
                 mixture, including the spread between the two means; counts are the true n"
            )
        } else {
            "none (prior strength 0): every row is its step's own chosen candidates".to_string()
        };
        let shrinkage = format!(
            "{rule}; steps without chosen candidates have no row; steps above {} count only in \
             the global row",
            self.options.max_steps
        );
        Ok(StepTable {
            schema: STEP_PARAMS_SCHEMA.to_string(),
            source: TableSource {
                kind: "selection-logs".to_string(),
                description: description.to_string(),
                stories: self.story_hashes.len() as u64,
                records: self.records,
                chosen: self.global.count,
                created: now_rfc3339(),
                generator: format!("storywriter {}", env!("CARGO_PKG_VERSION")),
                shrinkage,
            },
            global,
            steps,
        })
    }
}

/// A 64-bit hash of an id (SipHash with fixed keys).
fn hash(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// The current time, RFC 3339 in UTC to the second.
fn now_rfc3339() -> String {
    let since_epoch = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .unwrap_or_default();
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + since_epoch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_our_records_and_foreign_spellings() {
        let ours = json!({"record_id": "65a1", "story_id": "s1", "step": 2, "chosen": true,
            "params": {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "typical_p": 1.0,
                       "repetition_penalty": 1.1, "max_new_tokens": 48, "greedy": false}});
        let foreign = json!({"_id": {"$oid": "65a1"}, "storyId": {"$oid": "s1"},
            "stepIndex": {"$numberInt": "2"}, "selected": 1, "temp": {"$numberDouble": "0.7"},
            "topK": {"$numberLong": "40"}, "topP": "0.9", "typical": 1,
            "repeat_penalty": {"$numberDecimal": "1.1"}, "max_tokens": 48,
            "created": {"$date": {"$numberLong": "1700000000000"}}});
        let a = SelectionRecord::from_json(&ours).unwrap();
        let b = SelectionRecord::from_json(&foreign).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.params.top_k, 40.0);
        assert_eq!(a.params.repetition_penalty, 1.1);
    }

    #[test]
    fn missing_parameters_take_the_defaults() {
        let r = SelectionRecord::from_json(&json!({"story": 7, "step": "1", "chosen": "false"}))
            .unwrap();
        assert_eq!(r.story_id, "7");
        assert_eq!(r.record_id, None);
        assert!(!r.chosen);
        assert_eq!(r.params, ParamValues::default());
        assert_eq!(r.params.top_k, 50.0);
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            (
                json!({"story_id": "s", "step": 1, "chosen": true,
                    "params": {"temperature": {"$numberDouble": "NaN"}}}),
                "`temperature`",
            ),
            (
                json!({"story_id": "s", "step": 1, "chosen": true, "temp": "Infinity"}),
                "`temp`",
            ),
            (
                json!({"story_id": "s", "step": 0, "chosen": true}),
                "`step`",
            ),
            (
                json!({"story_id": "s", "step": 1.5, "chosen": true}),
                "`step`",
            ),
            (json!({"story_id": "s", "step": 1, "chosen": 2}), "`chosen`"),
            (json!({"story_id": "s", "chosen": true}), "no `step`"),
            (json!({"step": 1, "chosen": true}), "no `story_id`"),
            (
                json!({"story_id": [], "step": 1, "chosen": true}),
                "`story_id`",
            ),
            (json!([1, 2]), "JSON object"),
        ];
        for (value, expected) in cases {
            let message = SelectionRecord::from_json(&value).unwrap_err().to_string();
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    #[test]
    fn read_fields_keeps_what_the_normaliser_reads() {
        let text = r#"{"record_id": "r", "story": {"$oid": "s"}, "step": 1, "chosen": false,
            "input_ids": [1, 2, 3], "output_text": "x", "parameters": {"temp": 0.5, "x": 1},
            "temp": 0.7, "created": {"$date": "2025-01-01T00:00:00Z"}}"#;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let kept = ReadFields.deserialize(&mut deserializer).unwrap();
        let full: Value = serde_json::from_str(text).unwrap();
        let keys: Vec<&String> = kept.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["chosen", "parameters", "record_id", "step", "story", "temp"]
        );
        assert_eq!(kept["parameters"], full["parameters"]);
        assert_eq!(
            SelectionRecord::from_json(&kept).unwrap(),
            SelectionRecord::from_json(&full).unwrap()
        );
        for other in [
            "[1, {\"a\": 2}]",
            "17",
            "-3",
            "0.5",
            "\"s\"",
            "null",
            "true",
        ] {
            let mut deserializer = serde_json::Deserializer::from_str(other);
            let value = ReadFields.deserialize(&mut deserializer).unwrap();
            assert_eq!(value, serde_json::from_str::<Value>(other).unwrap());
        }
    }

    fn summary(mean: f64, std: f64, p: [f64; 3]) -> ParamSummary {
        ParamSummary {
            mean,
            std,
            p10: p[0],
            p50: p[1],
            p90: p[2],
        }
    }

    fn row(step: u32, count: u64, s: ParamSummary) -> StepParams {
        StepParams {
            step,
            count,
            temperature: s.clone(),
            top_k: s.clone(),
            top_p: s.clone(),
            typical_p: s.clone(),
            repetition_penalty: s.clone(),
            max_new_tokens: s,
        }
    }

    #[test]
    fn shrink_mixes_with_weight_n_over_n_plus_k() {
        // n = 2, k = 2: w = 1/2. var' = (1 + 1)/2 + (1/4)(2 − 3.5)² = 1.5625 = 1.25².
        let own = row(3, 2, summary(2.0, 1.0, [1.0, 2.0, 3.0]));
        let global = row(0, 8, summary(3.5, 1.0, [2.0, 4.0, 4.0]));
        let shrunk = shrink(&own, &global, 2.0);
        assert_eq!(shrunk.step, 3);
        assert_eq!(shrunk.count, 2);
        assert_eq!(shrunk.top_p, summary(2.75, 1.25, [1.5, 3.0, 3.5]));
        assert_eq!(shrink(&own, &global, 0.0), own);
    }
}
