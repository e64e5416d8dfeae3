//! Evaluating a picker on rounds: top-1 accuracy against chance (1/k), log loss against ln k,
//! and the baselines, each with a bootstrap 95% interval over rounds.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::picker::features::{Features, FEATURE_NAMES};
use crate::picker::train::LinearScorer;

/// Bootstrap resamples.
pub const BOOTSTRAP_SAMPLES: usize = 1000;

/// A metric with its bootstrap 95% interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The value on all rounds.
    pub value: f64,
    /// 2.5th and 97.5th percentiles over bootstrap resamples of the rounds.
    pub ci95: [f64; 2],
}

/// How well a picker (and the baselines) predict the choices of some rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Rounds evaluated.
    pub rounds: usize,
    /// Distinct stories among them.
    pub stories: usize,
    /// Share of rounds whose chosen candidate the picker ranks first (ties share the credit).
    pub top1: f64,
    /// Bootstrap 95% interval of `top1`.
    pub top1_ci95: [f64; 2],
    /// Mean negative log-probability of the chosen candidates.
    pub log_loss: f64,
    /// Bootstrap 95% interval of `log_loss`.
    pub log_loss_ci95: [f64; 2],
    /// Top-1 of picking at random: the mean of 1/k.
    pub chance: f64,
    /// Log loss of the uniform guess: the mean of ln k.
    pub chance_log_loss: f64,
    /// Top-1 of each baseline: `highest-mean-logprob`, `lowest-temperature`, `position-1`,
    /// `params-only` (a picker trained on the sampling parameters alone).
    pub baselines: BTreeMap<String, f64>,
    /// Bootstrap 95% intervals of the baselines' top-1.
    pub baselines_ci95: BTreeMap<String, [f64; 2]>,
}

/// A round to evaluate: each candidate's features and the chosen index.
pub type Labelled = (Vec<Features>, usize);

/// Credit of a ranking for one round: 1/t when the chosen candidate is among the t candidates
/// with the highest score, else 0.
fn top1_credit(scores: &[f64], chosen: usize) -> f64 {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ties = scores.iter().filter(|&&s| s == best).count();
    if scores[chosen] == best {
        1.0 / ties as f64
    } else {
        0.0
    }
}

fn feature(name: &str) -> usize {
    FEATURE_NAMES.iter().position(|n| *n == name).unwrap_or(0)
}

/// Evaluates `picker` (and `params_only`, the baseline of the same name) on `rounds`; the
/// bootstrap is seeded by `seed`.
pub fn evaluate(
    picker: &LinearScorer,
    params_only: &LinearScorer,
    rounds: &[Labelled],
    stories: usize,
    seed: u64,
) -> Evaluation {
    let (mean_logprob, temperature, position) = (
        feature("logprob_mean"),
        feature("temperature"),
        feature("position_1"),
    );
    type Rule<'a> = Box<dyn Fn(&[f32]) -> f64 + 'a>;
    let rules: Vec<(&str, Rule<'_>)> = vec![
        (
            "highest-mean-logprob",
            Box::new(move |x| f64::from(x[mean_logprob])),
        ),
        (
            "lowest-temperature",
            Box::new(move |x| -f64::from(x[temperature])),
        ),
        ("position-1", Box::new(move |x| f64::from(x[position]))),
        ("params-only", Box::new(|x| params_only.score(x))),
    ];
    let mut picker_top1 = Vec::with_capacity(rounds.len());
    let mut losses = Vec::with_capacity(rounds.len());
    let mut baseline_top1: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds.len()); rules.len()];
    let (mut chance, mut chance_loss) = (0.0, 0.0);
    for (features, chosen) in rounds {
        let scores: Vec<f64> = features.iter().map(|x| picker.score(x)).collect();
        picker_top1.push(top1_credit(&scores, *chosen));
        let p = crate::picker::train::softmax(&scores);
        losses.push(-p[*chosen].max(1e-12).ln());
        for (credits, (_, rule)) in baseline_top1.iter_mut().zip(&rules) {
            let scores: Vec<f64> = features.iter().map(|x| rule(x)).collect();
            credits.push(top1_credit(&scores, *chosen));
        }
        chance += 1.0 / features.len() as f64;
        chance_loss += (features.len() as f64).ln();
    }
    let n = rounds.len().max(1) as f64;
    let top1 = bootstrap(&picker_top1, seed);
    let log_loss = bootstrap(&losses, seed);
    let mut baselines = BTreeMap::new();
    let mut baselines_ci95 = BTreeMap::new();
    for ((name, _), credits) in rules.iter().zip(&baseline_top1) {
        let estimate = bootstrap(credits, seed);
        baselines.insert(name.to_string(), estimate.value);
        baselines_ci95.insert(name.to_string(), estimate.ci95);
    }
    Evaluation {
        rounds: rounds.len(),
        stories,
        top1: top1.value,
        top1_ci95: top1.ci95,
        log_loss: log_loss.value,
        log_loss_ci95: log_loss.ci95,
        chance: chance / n,
        chance_log_loss: chance_loss / n,
        baselines,
        baselines_ci95,
    }
}

/// The mean of per-round values and its percentile bootstrap 95% interval
/// ([`BOOTSTRAP_SAMPLES`] resamples of the rounds, seeded).
pub fn bootstrap(values: &[f64], seed: u64) -> Estimate {
    if values.is_empty() {
        return Estimate {
            value: f64::NAN,
            ci95: [f64::NAN, f64::NAN],
        };
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_SAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| {
        means[((q * (BOOTSTRAP_SAMPLES - 1) as f64).round() as usize).min(BOOTSTRAP_SAMPLES - 1)]
    };
    Estimate {
        value: mean,
        ci95: [at(0.025), at(0.975)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_the_credit() {
        assert_eq!(top1_credit(&[1.0, 1.0, 0.0], 0), 0.5);
        assert_eq!(top1_credit(&[1.0, 2.0, 0.0], 0), 0.0);
        assert_eq!(top1_credit(&[3.0, 2.0, 0.0], 0), 1.0);
    }

    #[test]
    fn bootstrap_interval_contains_the_mean() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i % 3 == 0)).collect();
        let e = bootstrap(&values, 1);
        assert!(e.ci95[0] < e.value && e.value < e.ci95[1]);
        assert!(e.ci95[1] - e.ci95[0] < 0.2);
    }
}
