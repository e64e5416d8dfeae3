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

use serde_json::Value;

use crate::data::params::{ParamSummary, StepParams, StepTable, TableSource, STEP_PARAMS_SCHEMA};
use crate::error::{Error, Result};
mod distribution;
mod input;
#[cfg(test)]
mod tests;

use distribution::Accumulator;
pub use distribution::{EXACT_DISTINCT_VALUES, PERCENTILE_RELATIVE_ACCURACY};
pub use input::{ParamValues, ReadFields, SelectionRecord, PARAM_SPELLINGS};

/// Default pseudo-count `k` of [`shrink`]: a step with 20 chosen records is half its own data,
/// half the global row.
pub const DEFAULT_PRIOR_STRENGTH: f64 = 20.0;

/// Default number of steps tabulated (steps `1..=1000`).
pub const DEFAULT_MAX_STEPS: u32 = 1000;

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
