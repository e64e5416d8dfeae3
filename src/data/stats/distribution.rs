//! Exact counts or a DDSketch per parameter, and the running summaries of one step.

use std::collections::BTreeMap;

use sketches_ddsketch::{Config, DDSketch};

use crate::data::params::{ParamSummary, StepParams};
use crate::shared::total_order::Total;

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

/// Exact counts of distinct values while there are few, a DDSketch after that.
#[derive(Clone)]
enum Distribution {
    Exact(BTreeMap<Total<f64>, u64>),
    Sketch(DDSketch),
}

impl Distribution {
    fn add(&mut self, x: f64) {
        match self {
            Self::Exact(counts) => {
                *counts.entry(Total(x)).or_insert(0) += 1;
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
pub(super) struct Accumulator {
    /// Records added.
    pub(super) count: u64,
    mean: [f64; 6],
    /// Sum of squared deviations from the running mean (Welford).
    m2: [f64; 6],
    distributions: [Distribution; 6],
}

impl Accumulator {
    pub(super) fn new() -> Self {
        Self {
            count: 0,
            mean: [0.0; 6],
            m2: [0.0; 6],
            distributions: std::array::from_fn(|_| Distribution::Exact(BTreeMap::new())),
        }
    }

    pub(super) fn add(&mut self, values: [f64; 6]) {
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

    pub(super) fn row(&self, step: u32) -> StepParams {
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
