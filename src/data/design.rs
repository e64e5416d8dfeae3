//! The experimental design of a round (`storywriter.record/2`): which policy is shown where, and
//! how likely its parameters were.
//!
//! * Position: the policies of a [`PolicyMix`] are assigned to display positions in a random
//!   order drawn from the round's `order_seed` ([`policy_order`]; every order has probability
//!   1/k!), so a preference for a position and a preference for a policy can be told apart.
//!   A candidate's parameters and generation seed depend on its policy's slot in the mix, not
//!   on where it is shown.
//! * Propensity: [`log_propensity`] is the log-probability (log-density for continuous
//!   parameters) of the drawn parameters under their policy, for off-policy evaluation.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::data::params::{candidate_params, Param, Policy, PolicyMix, StepParams, StepTable};
use crate::shared::SamplingParams;

/// A candidate to generate: its parameters, the policy that produced them, and its seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedCandidate {
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Name of the policy that produced them (`step-mean`, `manual`, …).
    pub policy: String,
    /// The per-step table the policy read, when it read one (recorded with the candidate).
    pub param_table: Option<String>,
    /// RNG seed (< 2^53).
    pub seed: u64,
    /// Display position, mix slot and propensity (see [`crate::data::design`]); `None` leaves
    /// those record fields empty.
    pub design: Option<CandidateDesign>,
}

/// Seeds and ids stay below 2^53 (exact in JavaScript and Arrow).
const SEED_MASK: u64 = (1 << 53) - 1;

/// Where a planned candidate is shown and how it was drawn; recorded with it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateDesign {
    /// Display position (1 = first).
    pub display_position: u32,
    /// Its policy's slot in the mix (1-based).
    pub mix_slot: u32,
    /// Seed of the round's shuffle.
    pub order_seed: u64,
    /// See [`log_propensity`].
    pub log_propensity: Option<f64>,
}

/// The mix slot (0-based) shown at each display position: a uniformly random permutation of
/// `0..k` drawn from `order_seed` and the step (ChaCha20, Fisher–Yates).
pub fn policy_order(order_seed: u64, step: u32, k: usize) -> Vec<usize> {
    let mut rng = ChaCha20Rng::seed_from_u64(order_seed);
    rng.set_stream(1 << 63 | u64::from(step));
    let mut order: Vec<usize> = (0..k).collect();
    for i in (1..k).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The order a round's candidates are shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// The slots of the mix in the order [`policy_order`] draws from the round's seed, so that
    /// a preference for a position cannot pass for one for a policy.
    Shuffled,
    /// The slots in the mix's own order (the page, whose cards follow its settings).
    InMixOrder,
}

/// Plans the round of `step`, in display order: slot `s` of `mix` gets the parameters
/// [`candidate_params`] gives it for `seed` and the generation seed `seed + s`, and the slots
/// are shown as `display` says; each candidate's design (position, slot, propensity) goes into
/// its record. `table_name` is recorded for the policies that read the table.
pub fn plan_round(
    table: &StepTable,
    table_name: &str,
    mix: &PolicyMix,
    step: u32,
    seed: u64,
    display: Display,
) -> Vec<PlannedCandidate> {
    let drawn = candidate_params(table, mix, step, seed);
    let row = table.row(step);
    let order_seed = seed & SEED_MASK;
    let order = match display {
        Display::Shuffled => policy_order(order_seed, step, drawn.len()),
        Display::InMixOrder => (0..drawn.len()).collect(),
    };
    order
        .into_iter()
        .enumerate()
        .map(|(position, slot)| {
            let (params, policy) = drawn[slot].clone();
            PlannedCandidate {
                design: Some(CandidateDesign {
                    display_position: position as u32 + 1,
                    mix_slot: slot as u32 + 1,
                    order_seed,
                    log_propensity: log_propensity(table, &row, policy, &params),
                }),
                policy: policy.name().to_string(),
                param_table: policy.uses_table().then(|| table_name.to_string()),
                seed: (seed + slot as u64) & SEED_MASK,
                params,
            }
        })
        .collect()
}

/// The natural log of the probability with which `policy` drew `params` from the step's `row`:
/// 0 for the deterministic `step-mean` and `fixed`; for `step-sample`, the sum over the six
/// tabulated parameters of the log-density of the normal draw (continuous parameters inside
/// their range), the log-probability of the rounded value (top_k, max_new_tokens), or the
/// log-probability of the clamped tail (a value at the ±3 std cut or a sane bound); a
/// parameter with std 0 adds nothing. `None` for `coupled-random`, whose rejection sampling on
/// a plane has no density written down here.
pub fn log_propensity(
    table: &StepTable,
    row: &StepParams,
    policy: Policy,
    params: &SamplingParams,
) -> Option<f64> {
    match policy {
        Policy::StepMean | Policy::Fixed => Some(0.0),
        Policy::CoupledRandom => None,
        Policy::StepSample => Some(
            Param::ALL
                .iter()
                .map(|&p| step_sample_log_probability(table, row, p, params))
                .sum(),
        ),
    }
}

fn step_sample_log_probability(
    table: &StepTable,
    row: &StepParams,
    param: Param,
    params: &SamplingParams,
) -> f64 {
    let summary = param.of(row);
    let (mean, std) = (summary.mean, summary.std);
    if std <= 0.0 || !std.is_finite() || !mean.is_finite() {
        return 0.0;
    }
    let (mut lo, mut hi) = param.bounds();
    if param == Param::TopK {
        lo = if mean.round() >= 1.0 { 1.0 } else { 0.0 };
        hi = table.top_k_limit().max(lo);
    }
    let a = (mean - 3.0 * std).max(lo);
    let b = (mean + 3.0 * std).min(hi);
    let z = |x: f64| (x - mean) / std;
    let value = param.value_in(params);
    let tolerance = 1e-6 * (1.0 + value.abs());
    let integer = matches!(param, Param::TopK | Param::MaxNewTokens);
    let (lower, upper) = if integer {
        (value - 0.5, value + 0.5)
    } else if value <= a + tolerance {
        (f64::NEG_INFINITY, a)
    } else if value >= b - tolerance {
        (b, f64::INFINITY)
    } else {
        return -0.5 * z(value).powi(2) - (std * (2.0 * std::f64::consts::PI).sqrt()).ln();
    };
    // Values clamped to a or b carry the whole tail beyond it.
    let lower = if lower <= a { f64::NEG_INFINITY } else { lower };
    let upper = if upper >= b { f64::INFINITY } else { upper };
    (normal_cdf(z(upper)) - normal_cdf(z(lower)))
        .max(f64::MIN_POSITIVE)
        .ln()
}

/// The standard normal distribution function, from `erfc` (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7).
fn normal_cdf(x: f64) -> f64 {
    if x == f64::INFINITY {
        return 1.0;
    }
    if x == f64::NEG_INFINITY {
        return 0.0;
    }
    let t = 1.0 / (1.0 + 0.5 * (x.abs() / std::f64::consts::SQRT_2));
    let u = x.abs() / std::f64::consts::SQRT_2;
    let poly = -u * u - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_is_a_permutation_and_all_orders_occur() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let order = policy_order(seed, 3, 3);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
            seen.insert(order);
        }
        assert_eq!(seen.len(), 6);
        assert_eq!(policy_order(5, 1, 3), policy_order(5, 1, 3));
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-3.0) - 0.001_349_9).abs() < 1e-6);
    }

    #[test]
    fn propensities_of_the_policies() {
        let table = StepTable::bundled();
        let mix: PolicyMix = "step-mean,step-sample,coupled-random".parse().unwrap();
        let round = plan_round(&table, "bundled table", &mix, 2, 11, Display::Shuffled);
        let mut slots: Vec<u32> = round.iter().map(|c| c.design.unwrap().mix_slot).collect();
        slots.sort_unstable();
        assert_eq!(slots, vec![1, 2, 3]);
        for candidate in &round {
            let design = candidate.design.unwrap();
            match candidate.policy.as_str() {
                "step-mean" => assert_eq!(design.log_propensity, Some(0.0)),
                "coupled-random" => assert_eq!(design.log_propensity, None),
                _ => assert!(design.log_propensity.unwrap().is_finite()),
            }
        }
        // The same slot draws the same parameters wherever it is shown.
        let plain = candidate_params(&table, &mix, 2, 11);
        for candidate in &round {
            let slot = candidate.design.unwrap().mix_slot as usize - 1;
            assert_eq!(candidate.params, plain[slot].0);
            assert_eq!(candidate.seed, 11 + slot as u64);
        }
    }
}
