//! The policies that turn a table row into a candidate's parameters, and their seeded draws.

use std::fmt;
use std::str::FromStr;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::{Param, StepParams, StepTable, COUPLED_SUM};
use crate::error::{Error, Result};
use crate::shared::SamplingParams;

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
pub(super) fn standard_normal(rng: &mut ChaCha20Rng) -> f64 {
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
