//! Training a [`LinearScorer`]: standardized features, a linear score per candidate, a softmax
//! over each round's candidates (Plackett–Luce top-1: the chosen candidate's log-probability is
//! maximized), L2 on the weights, AdamW on candle, and early stopping on a validation split
//! made by story.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::picker::features::{Features, PickRound};

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// L2 penalty on the (standardized) weights.
    pub l2: f64,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Most full-batch epochs.
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// Share of stories held out for testing.
    pub test_fraction: f64,
    /// Share of the training stories used for early stopping.
    pub validation_fraction: f64,
    /// Seed of the story splits.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            learning_rate: 0.1,
            max_epochs: 1000,
            patience: 100,
            test_fraction: 0.25,
            validation_fraction: 0.2,
            seed: 0,
        }
    }
}

/// A linear scorer over a subset of the features: `score = w · (x − mean) / scale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearScorer {
    /// Indices of the features it reads.
    pub features: Vec<usize>,
    /// Their training means.
    pub mean: Vec<f32>,
    /// Their training standard deviations (1 where a feature was constant).
    pub scale: Vec<f32>,
    /// The weights.
    pub weights: Vec<f32>,
}

impl LinearScorer {
    /// The score of one candidate.
    pub fn score(&self, x: &[f32]) -> f64 {
        self.features
            .iter()
            .enumerate()
            .map(|(j, &f)| f64::from(self.weights[j] * (x[f] - self.mean[j]) / self.scale[j]))
            .sum()
    }

    /// The probability of each candidate of a round being picked (softmax of the scores).
    pub fn probabilities(&self, round: &[Features]) -> Vec<f64> {
        softmax(&round.iter().map(|x| self.score(x)).collect::<Vec<_>>())
    }
}

/// Softmax of scores (an empty slice gives an empty vector).
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// How training went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights were kept (lowest validation loss; 0: the uniform picker).
    pub best_epoch: usize,
    /// Its validation log loss (training loss when there was no validation round).
    pub validation_log_loss: f64,
}

/// Stable 64-bit hash of a story id and a seed (FNV-1a), for splits that never depend on the
/// order of the log.
fn story_hash(story_id: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in story_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV leaves the last bytes in the low bits: mix them into the high ones (SplitMix64).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Splits rounds by story: a story's rounds all land on the same side. Returns the indices of
/// the rounds whose story falls in the `fraction` side, and of the others.
pub fn split_by_story(rounds: &[PickRound], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let cut = (fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    (0..rounds.len()).partition(|&i| story_hash(&rounds[i].story_id, seed) < cut)
}

/// Rounds as padded tensors: features `[R·K, F]` (standardized) and their transpose, a mask
/// `[R, K]` (0 for a candidate, −1e9 for padding) and the one-hot choice `[R, K]`.
struct Batch {
    x: Tensor,
    x_t: Tensor,
    mask: Tensor,
    target: Tensor,
}

fn batch(
    rounds: &[(Vec<Features>, usize)],
    scorer: &LinearScorer,
    device: &Device,
) -> Result<Batch> {
    let k = rounds.iter().map(|(f, _)| f.len()).max().unwrap_or(1);
    let n = scorer.features.len();
    let mut x = vec![0f32; rounds.len() * k * n];
    let mut mask = vec![-1e9f32; rounds.len() * k];
    let mut target = vec![0f32; rounds.len() * k];
    for (r, (features, chosen)) in rounds.iter().enumerate() {
        for (c, f) in features.iter().enumerate() {
            mask[r * k + c] = 0.0;
            for (j, &i) in scorer.features.iter().enumerate() {
                x[(r * k + c) * n + j] = (f[i] - scorer.mean[j]) / scorer.scale[j];
            }
        }
        target[r * k + chosen] = 1.0;
    }
    let x = Tensor::from_vec(x, (rounds.len() * k, n), device)?;
    Ok(Batch {
        x_t: x.t()?.contiguous()?,
        x,
        mask: Tensor::from_vec(mask, (rounds.len(), k), device)?,
        target: Tensor::from_vec(target, (rounds.len(), k), device)?,
    })
}

/// Each candidate's log-probability `[R, K]` under weights `w` `[F, 1]`.
fn log_probs(batch: &Batch, w: &Tensor) -> Result<Tensor> {
    let logits = batch.x.matmul(w)?.reshape(batch.mask.shape())?;
    Ok(candle_nn::ops::log_softmax(&(logits + &batch.mask)?, 1)?)
}

/// Mean negative log-probability of the chosen candidates.
fn loss(batch: &Batch, w: &Tensor) -> Result<f64> {
    let rows = batch.mask.dim(0)?.max(1) as f64;
    let sum = (log_probs(batch, w)? * &batch.target)?.sum_all()?;
    Ok(-f64::from(sum.to_scalar::<f32>()?) / rows)
}

/// The gradient of [`loss`] with respect to `w`, `xᵀ (softmax − target) / R`, computed
/// directly: candle's backprop would also build the gradient of the `[R·K, F]` features.
fn loss_gradient(batch: &Batch, w: &Tensor) -> Result<Tensor> {
    let rows = batch.mask.dim(0)?.max(1) as f64;
    let residual = (log_probs(batch, w)?.exp()? - &batch.target)?.affine(1.0 / rows, 0.0)?;
    // (F, R·K) · (R·K, 1) → (F, 1)
    Ok(batch.x_t.matmul(&residual.flatten_all()?.unsqueeze(1)?)?)
}

/// Trains a scorer on the `features` subset with `train` rounds, stopping early on the
/// `validation` rounds (features of each candidate and the chosen index); `on_epoch` is told
/// each epoch's number as it ends.
pub fn train_scorer(
    features: &[usize],
    train: &[(Vec<Features>, usize)],
    validation: &[(Vec<Features>, usize)],
    options: &TrainOptions,
    on_epoch: &mut dyn FnMut(usize),
) -> Result<(LinearScorer, TrainReport)> {
    if train.is_empty() {
        return Err(Error::Invalid("no rounds to train on".into()));
    }
    let n = features.len();
    let all: Vec<&[f32]> = train
        .iter()
        .flat_map(|(f, _)| f)
        .map(Vec::as_slice)
        .collect();
    let count = all.len() as f32;
    let mean: Vec<f32> = features
        .iter()
        .map(|&i| all.iter().map(|x| x[i]).sum::<f32>() / count)
        .collect();
    let scale: Vec<f32> = features
        .iter()
        .zip(&mean)
        .map(|(&i, m)| {
            let var = all.iter().map(|x| (x[i] - m).powi(2)).sum::<f32>() / count;
            if var > 1e-12 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    let mut scorer = LinearScorer {
        features: features.to_vec(),
        mean,
        scale,
        weights: vec![0.0; n],
    };
    let device = Device::Cpu;
    let train_batch = batch(train, &scorer, &device)?;
    let validation_batch = if validation.is_empty() {
        None
    } else {
        Some(batch(validation, &scorer, &device)?)
    };
    let w = Var::zeros((n, 1), DType::F32, &device)?;
    let mut optimizer = AdamW::new(
        vec![w.clone()],
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    // Early stopping starts from the uniform picker (all weights 0, epoch 0): weights are kept
    // only when they predict the validation rounds better than it.
    let check = validation_batch.as_ref().unwrap_or(&train_batch);
    let mut report = TrainReport {
        validation_log_loss: loss(check, w.as_tensor())?,
        ..TrainReport::default()
    };
    let mut best = vec![0f32; n];
    for epoch in 1..=options.max_epochs {
        let penalty = w.as_tensor().sqr()?.sum_all()?.affine(options.l2, 0.0)?;
        // w · g with g the loss's gradient, held constant: its gradient is g.
        let gradient = loss_gradient(&train_batch, &w.as_tensor().detach())?;
        let linearized = (w.as_tensor() * gradient)?.sum_all()?;
        optimizer.backward_step(&(linearized + penalty)?)?;
        let value = loss(check, w.as_tensor())?;
        report.epochs = epoch;
        on_epoch(epoch);
        if value < report.validation_log_loss - 1e-6 {
            report.validation_log_loss = value;
            report.best_epoch = epoch;
            best = w.as_tensor().flatten_all()?.to_vec1()?;
        } else if epoch - report.best_epoch >= options.patience {
            break;
        }
    }
    scorer.weights = best;
    Ok((scorer, report))
}
