//! Token sampling with the semantics of Hugging Face `generate(do_sample=True)`.
//!
//! Read from transformers **5.24.0** (`generation/utils.py::_get_logits_processor`,
//! `generation/logits_process.py`, `_sample`). For one row of logits, `generate` runs:
//!
//! 1. `RepetitionPenaltyLogitsProcessor` — only if `repetition_penalty != 1.0`. It is a
//!    *processor*, not a warper: it also applies with greedy decoding.
//! 2. The warpers, only with `do_sample=True` (so never with [`SamplingParams::greedy`]), in
//!    this order:
//!    `TemperatureLogitsWarper` if `temperature != 1.0`; `TopKLogitsWarper` if `top_k != 0`;
//!    `TopPLogitsWarper` if `top_p < 1.0`; `MinPLogitsWarper` if `min_p is not None` (our
//!    `min_p == 0.0` stands for `None`: a `MinPLogitsWarper(0.0)` would remove nothing);
//!    `TypicalLogitsWarper` if `typical_p < 1.0`. `min_tokens_to_keep` is 1 (no beams).
//!    (`TopHLogitsWarper`, epsilon and eta cutoffs are not offered here; they are off by default.)
//! 3. `softmax` then `torch.multinomial` (sampling) or `torch.argmax` (greedy, first maximum).
//!
//! Version notes (only 5.24.0 was read; the rest is from memory of older releases): in 4.x up
//! to about 4.44 the warpers came from a separate `_get_logits_warper`, appended after the
//! processors in the same relative order; `MinPLogitsWarper` exists since 4.39, after top-p;
//! 5.x has `TopHLogitsWarper` between temperature and top-k (off unless `top_h` is set) and
//! fills unset fields from global defaults (`top_k=50`, `top_p=1.0`, `typical_p=1.0`,
//! `temperature=1.0`, `min_p` unset), which [`SamplingParams::default`] mirrors. The activation
//! conditions above (`!= 1.0`, `!= 0`, `< 1.0`, `is not None`) are those of 5.24.0.
//!
//! Arithmetic follows torch on CPU where it decides which tokens survive: scores stay `f32`;
//! a Python-float parameter meets an `f32` tensor as an `f32` (torch casts the scalar), so
//! `scores / temperature`, `score * penalty`, `min_p * top_prob` and the comparisons against
//! `typical_p` are done in `f32`; `1 - top_p` is computed in `f64` from the decimal the user wrote
//! (see `python_float`) and then cast to `f32`, as Python then torch do; `cumsum` accumulates
//! `f32` probabilities in `f64` and rounds each partial sum to `f32`, as torch's CPU kernel does.
//! Softmax itself is computed in `f64` and rounded to `f32` (torch's vectorised `f32` softmax can
//! differ by an ulp; that only matters for scores sitting exactly on a threshold).
//!
//! Ties: top-k and min-p decide by value, so tied tokens are all kept or all removed, exactly as
//! in HF. Top-p (and typical-p) sort, and `torch.sort` is not stable: with torch 2.15 on an
//! AVX-512 CPU, rows of more than 16 entries come out with equal values in no particular order
//! (rows of ≤ 16 in index order; GPUs differ again). We sort stably (equal values in index order),
//! so when equal scores straddle the top-p cut-off, the lower-index ones are removed first (they
//! come first in the ascending order) and the higher-index ones are kept. HF may keep a different
//! subset of the tied tokens there; the number kept and the distribution over distinct values are
//! the same. Typical-p removes by value (ties with the cut-off distance are kept), so there only
//! the cumulative sum could see the order, and tied distances with different probabilities are
//! practically impossible.
//!
//! Randomness: one ChaCha20 stream per [`Sampler`], seeded with `seed_from_u64`; every sampling
//! step consumes exactly one `u64` (53 bits → a uniform in `[0, 1)`), whatever the parameters.
//! Exponentials and logarithms use `shared::portable_math`'s `exp` and `ln`, written with IEEE
//! basic operations only, so the same seed and logits give the same tokens on every platform,
//! wasm32 included (checked: native and wasm32 agree bit for bit; platform `libm`s may differ in
//! the last bit). The draws differ from torch's RNG, of course:
//! the *distribution* is HF's, the random stream is ours.

use crate::error::{Error, Result};
use crate::shared::portable_math::{exp, ln, sum_exp};
pub use crate::shared::SamplingParams;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A seeded, reproducible sampler for one candidate.
///
/// Same parameters, seed, logits and context → same tokens, on every platform.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
}

impl Sampler {
    /// A sampler with validated `params` and a ChaCha20 stream seeded from `seed`.
    pub fn new(params: SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: ChaCha20Rng::seed_from_u64(seed),
        })
    }

    /// Applies the processors in HF order to `logits` (one row, the vocabulary) given all ids so
    /// far (`context_ids`: prompt + generated), then picks a token: argmax when greedy (the first
    /// maximum, like `torch.argmax`), else a draw from the softmax of the processed scores.
    ///
    /// Errors on empty logits, NaN or +inf logits, no finite logit, a context id outside the
    /// vocabulary (HF silently ignores those; here they are a caller bug), or scores that
    /// overflow during processing (e.g. a huge logit divided by a tiny temperature).
    pub fn sample(&mut self, logits: &[f32], context_ids: &[u32]) -> Result<u32> {
        check_logits(logits)?;
        if let Some(&id) = context_ids.iter().find(|&&id| id as usize >= logits.len()) {
            return Err(invalid(format!(
                "context id {id} is outside the vocabulary of {} logits",
                logits.len()
            )));
        }
        let kept = process_kept(&self.params, logits, context_ids);
        if kept
            .scores
            .iter()
            .any(|s| s.is_nan() || *s == f32::INFINITY)
        {
            return Err(invalid(
                "processed scores overflowed (extreme logits for this temperature/penalty)".into(),
            ));
        }
        if self.params.greedy {
            return Ok(kept.id(argmax(&kept.scores)));
        }
        let u = uniform(&mut self.rng);
        draw(&kept.scores, u)
            .map(|i| kept.id(i))
            .ok_or_else(|| invalid("no token left to sample after processing".into()))
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }
}

/// The processed scores: the repetition penalty, then (unless greedy) the warpers, in HF order;
/// filtered entries are `-inf`. Exposed for tests and for recording.
///
/// Never panics. Like HF, context ids outside the vocabulary are ignored here (use
/// [`Sampler::sample`] for checked input), and a parameter at its "off" value skips its step.
pub fn process_logits(params: &SamplingParams, logits: &[f32], context_ids: &[u32]) -> Vec<f32> {
    let kept = process_kept(params, logits, context_ids);
    let Some(ids) = kept.ids else {
        return kept.scores;
    };
    let mut scores = vec![f32::NEG_INFINITY; logits.len()];
    for (&id, s) in ids.iter().zip(kept.scores) {
        scores[id as usize] = s;
    }
    scores
}

/// The tokens still in play after processing: their scores, in vocabulary order, and their ids
/// once top-k has dropped the rest (`None`: every token of the vocabulary).
///
/// The warpers after top-k see only its survivors: every other score is `-inf`, whose
/// probability is 0 and whose place in any sum or sort changes nothing, so working on the few
/// survivors gives the very same numbers as working on the whole vocabulary, without a dozen
/// passes over 250,880 scores per token.
struct Kept {
    ids: Option<Vec<u32>>,
    scores: Vec<f32>,
}

impl Kept {
    /// The vocabulary id of the `i`-th kept score.
    fn id(&self, i: usize) -> u32 {
        self.ids.as_ref().map_or(i as u32, |ids| ids[i])
    }
}

/// [`process_logits`], keeping only top-k's survivors.
fn process_kept(params: &SamplingParams, logits: &[f32], context_ids: &[u32]) -> Kept {
    let mut scores = logits.to_vec();
    if !scores.is_empty() && params.repetition_penalty != 1.0 {
        repetition_penalty(&mut scores, context_ids, params.repetition_penalty);
    }
    if scores.is_empty() || params.greedy {
        return Kept { ids: None, scores };
    }
    if params.temperature != 1.0 {
        temperature(&mut scores, params.temperature);
    }
    let mut kept = if params.top_k != 0 {
        top_k(&scores, params.top_k)
    } else {
        Kept { ids: None, scores }
    };
    if params.top_p < 1.0 {
        top_p(&mut kept.scores, params.top_p);
    }
    if params.min_p > 0.0 {
        min_p(&mut kept.scores, params.min_p);
    }
    if params.typical_p < 1.0 {
        typical_p(&mut kept.scores, params.typical_p);
    }
    kept
}

/// `log_softmax(logits)[id]`, computed stably in `f64` (max subtracted), for recording the
/// model's log-probability of a token. NaN if `id` is out of range or the logits are unusable.
/// The sum over the vocabulary is [`sum_exp`]'s (SIMD in wasm, the same number everywhere).
pub fn log_prob(logits: &[f32], id: u32) -> f32 {
    let Some(&x) = logits.get(id as usize) else {
        return f32::NAN;
    };
    match log_normalizer(logits) {
        Some((m, ln_sum)) => (x as f64 - m as f64 - ln_sum) as f32,
        None => f32::NAN,
    }
}

/// The `k` most likely ids of `logits` (ties: the lower id first), most likely first, each with
/// its [`log_prob`] (the same number, bit for bit). Empty when the logits are unusable.
pub fn top_log_probs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let Some((m, ln_sum)) = log_normalizer(logits) else {
        return vec![];
    };
    let by_score = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let mut ids: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    let k = k.min(ids.len());
    if k == 0 {
        return vec![];
    }
    ids.select_nth_unstable_by(k - 1, by_score);
    ids.truncate(k);
    ids.sort_unstable_by(by_score);
    ids.into_iter()
        .map(|i| (i as u32, (logits[i] as f64 - m as f64 - ln_sum) as f32))
        .collect()
}

/// The largest logit and `ln Σ exp(x − max)`, what [`log_prob`] subtracts; `None` when no logit
/// is finite.
fn log_normalizer(logits: &[f32]) -> Option<(f32, f64)> {
    let m = max_score(logits);
    m.is_finite().then(|| (m, ln(sum_exp(logits, m))))
}

/// True when `text` ends a sentence: `.`, `!`, `?`, `…`, `。`, `！`, `？` or `．`, possibly
/// followed by closing quotes or brackets, then possibly by whitespace.
pub fn ends_sentence(text: &str) -> bool {
    const CLOSERS: &[char] = &[
        '"', '\'', '”', '’', '»', '›', ')', ']', '}', '）', '］', '」', '』', '】', '〕', '〉',
        '》',
    ];
    const ENDS: &[char] = &['.', '!', '?', '…', '。', '！', '？', '．'];
    let body = text.trim_end().trim_end_matches(CLOSERS);
    body.ends_with(ENDS)
}

// ---------------------------------------------------------------------------------------------
// The processors, one function each, with HF's semantics (transformers 5.24.0).

/// `RepetitionPenaltyLogitsProcessor`: every distinct id of the context (out-of-vocabulary ids
/// ignored) has its score `s` replaced by `s * penalty` if `s < 0`, else `s / penalty` — once per
/// id, however often it occurs (HF gathers the original scores, then scatters).
fn repetition_penalty(scores: &mut [f32], context_ids: &[u32], penalty: f32) {
    let mut ids: Vec<u32> = context_ids
        .iter()
        .copied()
        .filter(|&id| (id as usize) < scores.len())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let s = &mut scores[id as usize];
        *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
    }
}

/// `TemperatureLogitsWarper`: `scores / temperature` in `f32`.
fn temperature(scores: &mut [f32], temperature: f32) {
    for s in scores {
        *s /= temperature;
    }
}

/// `TopKLogitsWarper`: `k = max(top_k, 1)` clamped to the vocabulary; removes every score below
/// the k-th largest, so scores tied with the k-th are kept. Returns the survivors.
fn top_k(scores: &[f32], top_k: usize) -> Kept {
    let k = top_k.max(1).min(scores.len());
    let kth = kth_largest(scores, k);
    let (mut ids, mut kept) = (vec![], vec![]);
    for (p, piece) in scores.chunks(PIECE).enumerate() {
        if !any_not_below(piece, kth) {
            continue;
        }
        // NaN kept, as HF.
        for (i, &s) in piece.iter().enumerate() {
            if not_below(s, kth) {
                ids.push((p * PIECE + i) as u32);
                kept.push(s);
            }
        }
    }
    Kept {
        ids: Some(ids),
        scores: kept,
    }
}

/// The `k`-th largest score (`total_cmp` order, duplicates counted), `1 ≤ k ≤ scores.len()`.
/// For a small `k` (the usual top-k) one pass keeps the `k` largest so far in a heap, most
/// pieces of [`PIECE`] scores costing one comparison on SIMD lanes with its smallest (see
/// [`any_not_below`]); a larger `k` selects in a copy.
fn kth_largest(scores: &[f32], k: usize) -> f32 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use crate::shared::total_order::Total;

    if k > 1024 {
        let mut sorted = scores.to_vec();
        let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        return *kth;
    }
    let mut largest: BinaryHeap<Reverse<Total<f32>>> =
        scores[..k].iter().map(|&s| Reverse(Total(s))).collect();
    let offer = |largest: &mut BinaryHeap<Reverse<Total<f32>>>, s: f32| {
        let smallest = largest.peek().expect("k ≥ 1").0 .0;
        if s.total_cmp(&smallest).is_gt() {
            largest.pop();
            largest.push(Reverse(Total(s)));
        }
    };
    let mut pieces = scores[k..].chunks_exact(PIECE);
    for piece in &mut pieces {
        let smallest = largest.peek().expect("k ≥ 1").0 .0;
        if any_not_below(piece, smallest) {
            piece.iter().for_each(|&s| offer(&mut largest, s));
        }
    }
    (pieces.remainder().iter()).for_each(|&s| offer(&mut largest, s));
    largest.peek().expect("k ≥ 1").0 .0
}

/// Scores a scan over the vocabulary checks at once (see [`any_not_below`]).
const PIECE: usize = 16;

/// Whether some score of `piece` is [`not_below`] `bound` (NaN counts, and so does
/// a zero of either sign against a zero): a test every score that [`f32::total_cmp`] puts at
/// or above `bound` passes, counted without branches so that the compiler checks a piece on
/// SIMD lanes. The scans over 250,880 scores skip the pieces that fail it.
fn any_not_below(piece: &[f32], bound: f32) -> bool {
    piece
        .iter()
        .map(|&s| u32::from(not_below(s, bound)))
        .sum::<u32>()
        > 0
}

/// `!(s < bound)`: true for NaN too.
#[inline(always)]
fn not_below(s: f32, bound: f32) -> bool {
    s.partial_cmp(&bound) != Some(std::cmp::Ordering::Less)
}

/// `TopPLogitsWarper`: sort ascending, cumulative softmax, remove entries whose cumulative
/// probability is `<= 1 - top_p`, but always keep the last (most likely) one.
///
/// `-inf` entries have probability 0, so they sort first with a cumulative sum of 0 and are
/// removed anyway; only the finite ones are sorted, which gives the same result faster.
fn top_p(scores: &mut [f32], top_p: f32) {
    let probs = softmax_f32(scores);
    let order = ascending_finite(scores, scores);
    let threshold = (1.0 - python_float(top_p)) as f32;
    let cumulative = cumsum_f32(order.iter().map(|&i| probs[i]));
    let keep_from = order.len().saturating_sub(1);
    for (pos, (&i, &c)) in order.iter().zip(&cumulative).enumerate() {
        if pos < keep_from && c <= threshold {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// `MinPLogitsWarper`: remove tokens whose probability is below `min_p` × the top probability
/// (the product in `f32`); the most likely token is always kept.
fn min_p(scores: &mut [f32], min_p: f32) {
    let probs = softmax_f32(scores);
    let top = probs.iter().copied().fold(0.0f32, f32::max);
    let scaled = min_p * top;
    let best = argmax(scores);
    for (i, (s, &p)) in scores.iter_mut().zip(&probs).enumerate() {
        if p < scaled && i != best {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TypicalLogitsWarper`: with `H` the entropy, sort tokens by `|-log p - H|` ascending, count
/// the cumulative probabilities `< mass` (clamped to the last index) to find the cut-off distance,
/// and remove every token farther from `H` than that; the first token in that order is kept.
///
/// `-inf` entries sort last (distance `+inf`) with probability 0; they are handled without
/// sorting them, including HF's corner case where the cut-off lands on one of them (then the
/// threshold is `+inf` and nothing finite is removed).
fn typical_p(scores: &mut [f32], mass: f32) {
    let (log_probs, probs) = log_softmax_f32(scores);
    let entropy = -log_probs
        .iter()
        .zip(&probs)
        .filter(|(l, _)| l.is_finite())
        .map(|(&l, &p)| l as f64 * p as f64)
        .sum::<f64>() as f32;
    let distance: Vec<f32> = log_probs.iter().map(|&l| (-l - entropy).abs()).collect();
    let order = ascending_finite(&distance, scores);
    let sorted_probs = softmax_f32(scores); // HF: `scores.gather(sorted_indices).softmax()`
    let cumulative = cumsum_f32(order.iter().map(|&i| sorted_probs[i]));
    let below = cumulative.iter().filter(|&&c| c < mass).count();
    let total_below = cumulative.last().is_some_and(|&c| c < mass);
    let non_finite = scores.len() - order.len();
    let last_ind = (below + if total_below { non_finite } else { 0 }).min(scores.len() - 1);
    if last_ind >= order.len() {
        return; // the cut-off is a `-inf` entry: threshold +inf, nothing finite removed
    }
    let cutoff = distance[order[last_ind]];
    for &i in order.iter().skip(1) {
        if distance[i] > cutoff {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn invalid(message: String) -> Error {
    Error::Invalid(message)
}

/// Rejects logits the sampler cannot use, naming the problem.
fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(invalid("logits are empty (vocabulary of 0 tokens)".into()));
    }
    let finite = |piece: &[f32]| piece.iter().map(|l| u32::from(l.is_finite())).sum::<u32>();
    if logits
        .chunks(PIECE)
        .all(|piece| finite(piece) as usize == piece.len())
    {
        return Ok(()); // the usual case, in one pass (a piece at a time, on SIMD lanes)
    }
    if let Some(i) = logits.iter().position(|l| l.is_nan()) {
        return Err(invalid(format!("logits contain NaN (first at index {i})")));
    }
    if let Some(i) = logits.iter().position(|&l| l == f32::INFINITY) {
        return Err(invalid(format!("logits contain +inf (first at index {i})")));
    }
    if !logits.iter().any(|l| l.is_finite()) {
        return Err(invalid("logits are all -inf".into()));
    }
    Ok(())
}

/// The value Python would hold for the decimal this `f32` was written as: the shortest decimal
/// that round-trips the `f32` (e.g. `0.9f32` → `"0.9"`), parsed as `f64`. HF computes `1 - top_p`
/// in Python floats, so `0.9` must become `0.9f64`, not `0.8999999761581421`.
fn python_float(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Indices of the finite `scores`, sorted by `keys` ascending (`total_cmp`), equal keys in
/// index order (the order of a stable sort).
fn ascending_finite(keys: &[f32], scores: &[f32]) -> Vec<usize> {
    let mut pairs: Vec<(f32, u32)> = (0..scores.len())
        .filter(|&i| scores[i].is_finite())
        .map(|i| (keys[i], i as u32))
        .collect();
    // A stable radix sort in `total_cmp`'s order (ties keep the index order): the same order as
    // sorting by (key, index), several times faster over a 250,880-token vocabulary (in wasm,
    // a comparison sort made this a tenth of a decode step).
    radsort::sort_by_key(&mut pairs, |pair| pair.0);
    pairs.into_iter().map(|(_, i)| i as usize).collect()
}

/// The largest score (`-inf` for none); NaN is ignored.
fn max_score(scores: &[f32]) -> f32 {
    scores.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Index of the first maximum (`torch.argmax` returns the first on ties).
fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// Softmax in `f64` with the maximum subtracted, rounded to `f32`.
fn softmax_f32(scores: &[f32]) -> Vec<f32> {
    let m = max_score(scores) as f64;
    let e: Vec<f64> = scores.iter().map(|&s| exp(s as f64 - m)).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&x| (x / sum) as f32).collect()
}

/// `(log_softmax, exp(log_softmax))` as torch's `TypicalLogitsWarper` computes them, in `f32`.
fn log_softmax_f32(scores: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let m = max_score(scores) as f64;
    let lse = ln(scores.iter().map(|&s| exp(s as f64 - m)).sum::<f64>());
    let log_probs: Vec<f32> = scores
        .iter()
        .map(|&s| (s as f64 - m - lse) as f32)
        .collect();
    let probs = log_probs.iter().map(|&l| exp(l as f64) as f32).collect();
    (log_probs, probs)
}

/// Torch's CPU `cumsum` of `f32`: accumulate in `f64`, round every partial sum to `f32`.
fn cumsum_f32(values: impl Iterator<Item = f32>) -> Vec<f32> {
    let mut acc = 0.0f64;
    values
        .map(|v| {
            acc += v as f64;
            acc as f32
        })
        .collect()
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits of one `u64`.
fn uniform(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Inverse-CDF draw from `softmax(scores)` with `u` in `[0, 1)`: the first index whose cumulative
/// weight exceeds `u × total`. `None` if no score is finite.
fn draw(scores: &[f32], u: f64) -> Option<usize> {
    let m = max_score(scores) as f64;
    if !m.is_finite() {
        return None;
    }
    let weight = |s: f32| exp(s as f64 - m);
    let target = u * scores.iter().map(|&s| weight(s)).sum::<f64>();
    let mut acc = 0.0;
    let mut last = None;
    for (i, &s) in scores.iter().enumerate() {
        let w = weight(s);
        if w > 0.0 {
            acc += w;
            last = Some(i);
            if target < acc {
                return last;
            }
        }
    }
    last // only reachable through rounding: the last token with a positive weight
}

#[cfg(test)]
mod tests;
