//! Generating several candidate continuations of one prompt, decoded together as a batch.
//!
//! The prompt is run once; its cache is forked into one sequence per candidate (they share the
//! prompt's keys and values); every step runs all unfinished candidates through the model in
//! one batched forward pass and lets each candidate's own seeded [`Sampler`] pick its next
//! token. When the story outgrows the model's context, the oldest cached positions are dropped
//! (ALiBi needs no position re-encoding).
//!
//! A [`CachePool`] keeps the caches of a round (the prompt's and each candidate's) for the
//! next: a round whose prompt starts with what a held cache holds (the story plus the chosen
//! candidate, an undo, a regenerate, a hand edit that keeps the beginning) runs only the
//! tokens after the longest common prefix.

use std::ops::ControlFlow;

use candle_core::Tensor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::engine::kernels::awake::with_threads_awake;
use crate::engine::kv_cache::KvCache;
use crate::engine::model::Bloom;
use crate::engine::profile::SpanTotal;
use crate::engine::sampling::{ends_sentence, log_prob, Sampler, SamplingParams};
use crate::engine::tokenizer::Tokenizer;
use crate::error::{Error, Result};
pub use crate::shared::{Candidate, FinishReason};

/// One candidate to generate: its sampling parameters and RNG seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateSpec {
    /// How to sample.
    pub params: SamplingParams,
    /// Seed of the candidate's RNG: the same model, prompt, parameters and seed give the same
    /// tokens.
    pub seed: u64,
}

/// A token as it is generated, for streaming.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    /// Index of the candidate in the spec list.
    pub candidate: usize,
    /// The token id.
    pub id: u32,
    /// Text that became complete with this token (may be empty inside a multi-byte character).
    pub text: &'a str,
}

/// Timings of one generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Prompt tokens run through the model.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from a cache kept from an earlier round.
    #[serde(default)]
    pub reused_tokens: usize,
    /// Seconds spent on the prompt.
    pub prefill_s: f64,
    /// Tokens generated over all candidates.
    pub generated_tokens: usize,
    /// Batched decode steps.
    pub decode_steps: usize,
    /// Seconds spent decoding.
    pub decode_s: f64,
    /// Time per span of the engine, when a profile was asked for (`engine::profile`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<SpanTotal>,
}

/// Candidates and timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// One per spec, in order.
    pub candidates: Vec<Candidate>,
    /// How long it took.
    pub stats: GenerationStats,
}

/// State of one candidate while it is generated.
struct Running {
    sampler: Sampler,
    context: Vec<u32>,
    prompt_len: usize,
    logprobs: Vec<f32>,
    /// Sum of the final hidden states that produced its tokens (one per log-probability).
    hidden_sum: Vec<f32>,
    emitted: usize,
    finish: Option<FinishReason>,
}

impl Running {
    fn new_ids(&self) -> &[u32] {
        &self.context[self.prompt_len..]
    }

    /// The new ids that make up the text: all but a final end-of-sequence token.
    fn text_ids(&self, eos: u32) -> &[u32] {
        let ids = self.new_ids();
        ids.strip_suffix(&[eos]).unwrap_or(ids)
    }
}

/// Generates one candidate per spec as continuations of `prompt_ids`, calling `on_token` for
/// every token (return `ControlFlow::Break(())` to stop all candidates). Nothing is kept for
/// later rounds: see [`CachePool::generate`].
pub fn generate(
    model: &Bloom,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    specs: &[CandidateSpec],
    on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    CachePool::new(0).generate(model, tokenizer, prompt_ids, specs, on_token)
}

/// A cache and the token ids whose keys and values it holds.
#[derive(Debug, Clone)]
struct Held {
    ids: Vec<u32>,
    cache: KvCache,
}

/// The caches of the last rounds, each with the ids it holds, for the next round to start
/// from. They share their blocks (the story's positions are held once), so keeping the prompt's
/// and every candidate's cache costs only the candidates' own positions.
#[derive(Debug, Clone)]
pub struct CachePool {
    held: Vec<Held>,
    capacity: usize,
}

impl Default for CachePool {
    /// Room for two rounds of three candidates: the current story, its candidates, and the
    /// round before (undo, choose again).
    fn default() -> Self {
        Self::new(8)
    }
}

impl CachePool {
    /// A pool keeping the `capacity` most recent caches (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        Self {
            held: vec![],
            capacity,
        }
    }

    /// Forgets every cache (another model was loaded).
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Number of caches held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no cache is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn keep(&mut self, ids: Vec<u32>, cache: KvCache) {
        if self.capacity == 0 {
            return;
        }
        self.held.retain(|h| h.ids != ids);
        self.held.push(Held { ids, cache });
        let excess = self.held.len().saturating_sub(self.capacity);
        self.held.drain(..excess);
    }

    /// A cache holding the longest prefix of `window` that a held cache holds (always leaving
    /// at least the last token to run, for its logits), or an empty one.
    pub(crate) fn prefix_cache(&self, model: &Bloom, window: &[u32]) -> KvCache {
        let common = |ids: &[u32]| ids.iter().zip(window).take_while(|(a, b)| a == b).count();
        match self.held.iter().max_by_key(|h| common(&h.ids)) {
            Some(h) if common(&h.ids) > 0 => {
                let mut cache = h.cache.clone();
                cache.truncate(common(&h.ids).min(window.len() - 1));
                cache
            }
            _ => model.new_cache(),
        }
    }

    /// Drops the held caches that share not even a first token with `window`: once the window
    /// has slid past the story's beginning they hold nothing this round can start from, and
    /// keeping them while the new window's cache is built would hold two stories' caches at
    /// the worker's peak.
    fn forget_unrelated(&mut self, window: &[u32]) {
        self.held.retain(|h| h.ids.first() == window.first());
    }

    /// Generates one candidate per spec as continuations of `prompt_ids`, like [`generate`],
    /// starting from the held cache that shares the longest prefix with the prompt, and keeps
    /// the prompt's and the candidates' caches for later rounds.
    pub fn generate(
        &mut self,
        model: &Bloom,
        tokenizer: &Tokenizer,
        prompt_ids: &[u32],
        specs: &[CandidateSpec],
        mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut round = self.start_round(model, tokenizer, prompt_ids, specs)?;
        while round.step(&mut on_token)? {}
        round.finish()
    }

    /// Starts a round like [`Self::generate`]: runs the prompt (its last `context_length`
    /// tokens) after what a held cache has of it; the candidates are then decoded by
    /// [`Round::step`].
    pub fn start_round<'a>(
        &'a mut self,
        model: &'a Bloom,
        tokenizer: &'a Tokenizer,
        prompt_ids: &[u32],
        specs: &[CandidateSpec],
    ) -> Result<Round<'a>> {
        if prompt_ids.is_empty() {
            return Err(Error::Invalid(
                "the prompt is empty: give at least one token".into(),
            ));
        }
        let running = specs
            .iter()
            .map(|spec| {
                Ok(Running {
                    sampler: Sampler::new(spec.params.clone(), spec.seed)?,
                    context: prompt_ids.to_vec(),
                    prompt_len: prompt_ids.len(),
                    logprobs: vec![],
                    hidden_sum: vec![],
                    emitted: 0,
                    finish: (spec.params.max_new_tokens == 0).then_some(FinishReason::Length),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stats = GenerationStats::default();
        let window = &prompt_ids[prompt_ids
            .len()
            .saturating_sub(model.config().context_length)..];
        let active: Vec<usize> = (0..specs.len())
            .filter(|&i| running[i].finish.is_none())
            .collect();
        let (mut rows, mut hidden) = (vec![], vec![]);
        let mut cache = model.new_cache();
        if !active.is_empty() {
            let start = Instant::now();
            let _span = tracing::info_span!("prefill").entered();
            cache = self.prefix_cache(model, window);
            self.forget_unrelated(window);
            cache.compact()?;
            stats.reused_tokens = cache.len();
            let fresh = &window[cache.len()..];
            stats.prompt_tokens = fresh.len();
            cache.reserve(fresh.len());
            let input = Tensor::new(fresh, model.device())?.unsqueeze(0)?;
            // The last position's final hidden state (1, 1, hidden) and its logits: every
            // candidate's first token comes from them.
            let (last, logits) = with_threads_awake(|| -> Result<_> {
                let last = model.final_hidden(&input, &mut cache, &[fresh.len() - 1])?;
                let logits = model.logits(&last)?;
                Ok((last, logits))
            })?;
            rows = vec![logits.flatten_all()?.to_vec1()?; active.len()];
            hidden = vec![last.flatten_all()?.to_vec1()?; active.len()];
            stats.prefill_s = start.elapsed().as_secs_f64();
            self.keep(window.to_vec(), cache.clone());
            cache = cache.fork(active.len())?;
            let longest = specs.iter().map(|s| s.params.max_new_tokens).max();
            cache.reserve(longest.unwrap_or(1));
        }
        Ok(Round {
            pool: self,
            model,
            tokenizer,
            specs: specs.to_vec(),
            window: window.to_vec(),
            running,
            active,
            cache,
            rows,
            hidden,
            stats,
            decode_start: Instant::now(),
            slid: false,
            stop: false,
        })
    }
}

/// A round being generated one decode step at a time, so that the caller can do other work
/// between steps (a web worker answers its messages) and stop it.
pub struct Round<'a> {
    pool: &'a mut CachePool,
    model: &'a Bloom,
    tokenizer: &'a Tokenizer,
    specs: Vec<CandidateSpec>,
    /// The prompt tokens the model saw.
    window: Vec<u32>,
    running: Vec<Running>,
    /// The unfinished candidates, in the order of the batch (and of `rows`).
    active: Vec<usize>,
    cache: KvCache,
    /// The next-token logits of each active candidate.
    rows: Vec<Vec<f32>>,
    /// The final hidden state each row of logits came from.
    hidden: Vec<Vec<f32>>,
    stats: GenerationStats,
    decode_start: Instant,
    /// Positions were dropped from the cache: it no longer holds a prefix of the ids.
    slid: bool,
    /// Stop every candidate at the next step.
    stop: bool,
}

impl Round<'_> {
    /// Ends the round at the next step: every unfinished candidate stops there.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Samples one token per unfinished candidate from its logits, calling `on_token` for each
    /// (`ControlFlow::Break(())` stops the round after this step), then runs the candidates that
    /// go on one step through the model, as one batch. Returns whether any goes on.
    pub fn step(
        &mut self,
        on_token: &mut impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<bool> {
        if self.active.is_empty() {
            return Ok(false);
        }
        let _span = tracing::info_span!("decode_step", batch = self.active.len()).entered();
        let eos = self.model.config().eos_token_id;
        if !self.stop {
            let drawn = self.sample()?;
            for ((&i, (id, logprob)), state) in self.active.iter().zip(drawn).zip(&self.hidden) {
                let run = &mut self.running[i];
                run.context.push(id);
                run.logprobs.push(logprob);
                if run.hidden_sum.is_empty() {
                    run.hidden_sum = state.clone();
                } else {
                    run.hidden_sum
                        .iter_mut()
                        .zip(state)
                        .for_each(|(s, h)| *s += h);
                }
                self.stats.generated_tokens += 1;
                let text = self.tokenizer.decode(run.text_ids(eos))?;
                let complete = text.trim_end_matches('\u{FFFD}');
                let delta = complete.get(run.emitted..).unwrap_or("");
                run.emitted = run.emitted.max(complete.len());
                let params = run.sampler.params();
                run.finish = if id == eos {
                    Some(FinishReason::Eos)
                } else if run.new_ids().len() >= params.max_new_tokens {
                    Some(FinishReason::Length)
                } else if params.stop_at_sentence_end && ends_sentence(complete) {
                    Some(FinishReason::SentenceEnd)
                } else {
                    None
                };
                if !self.stop
                    && on_token(TokenEvent {
                        candidate: i,
                        id,
                        text: delta,
                    })
                    .is_break()
                {
                    self.stop = true;
                }
            }
        }
        if self.stop {
            for &i in &self.active {
                self.running[i].finish.get_or_insert(FinishReason::Stopped);
            }
        }
        // Keep the finished candidates' caches (the window and their tokens but the last,
        // which was sampled, not run), then run the others one step.
        let mut still = vec![];
        for (k, &i) in self.active.iter().enumerate() {
            if self.running[i].finish.is_none() {
                still.push(k);
            } else if !self.slid && self.pool.capacity > 0 {
                let new = self.running[i].new_ids();
                if let Some((_, fed)) = new.split_last() {
                    let ids = [self.window.as_slice(), fed].concat();
                    self.pool.keep(ids, self.cache.select(&[k])?);
                }
            }
        }
        self.stats.decode_s = self.decode_start.elapsed().as_secs_f64();
        if still.is_empty() {
            self.active.clear();
            return Ok(false);
        }
        if still.len() != self.active.len() {
            self.cache = self.cache.select(&still)?;
            self.active = still.iter().map(|&k| self.active[k]).collect();
        }
        let context_length = self.model.config().context_length;
        if self.cache.len() + 1 > context_length {
            self.cache = self.cache.slide((context_length / 8).max(1))?;
            self.slid = true;
        }
        let last: Vec<u32> = self
            .active
            .iter()
            .map(|&i| *self.running[i].context.last().expect("one token"))
            .collect();
        let input = Tensor::new(last.as_slice(), self.model.device())?.unsqueeze(1)?;
        // (b, 1, hidden) final hidden states and their (b, 1, vocab) logits.
        let (hidden, logits) = {
            let _span = tracing::trace_span!("forward").entered();
            let (model, cache) = (&self.model, &mut self.cache);
            with_threads_awake(|| -> Result<_> {
                let hidden = model.final_hidden(&input, cache, &[0])?;
                let logits = model.logits(&hidden)?;
                Ok((hidden, logits))
            })?
        };
        self.rows = logits.squeeze(1)?.to_vec2()?;
        self.hidden = hidden.squeeze(1)?.to_vec2()?;
        self.stats.decode_steps += 1;
        self.stats.decode_s = self.decode_start.elapsed().as_secs_f64();
        Ok(true)
    }

    /// Each active candidate's next token and its log-probability, drawn from its row of
    /// logits; the candidates on rayon's threads (each one's sampler is its own), kept awake
    /// for the log-probabilities' sums over the vocabulary, which they share out too.
    fn sample(&mut self) -> Result<Vec<(u32, f32)>> {
        let _span = tracing::trace_span!("sample").entered();
        let active = &self.active;
        let runs: Vec<&mut Running> = (self.running.iter_mut().enumerate())
            .filter(|(i, _)| active.contains(i))
            .map(|(_, run)| run)
            .collect();
        let rows = &self.rows;
        with_threads_awake(|| {
            runs.into_par_iter()
                .zip(rows)
                .map(|(run, row)| {
                    let id = run.sampler.sample(row, &run.context)?;
                    Ok((id, log_prob(row, id)))
                })
                .collect()
        })
    }

    /// The candidates (one per spec, in order) and the timings.
    pub fn finish(self) -> Result<Generation> {
        let eos = self.model.config().eos_token_id;
        let candidates = self
            .running
            .into_iter()
            .zip(self.specs)
            .map(|(run, spec)| {
                let tokens = run.logprobs.len() as f32;
                let hidden_mean = run.hidden_sum.iter().map(|s| s / tokens).collect();
                Ok(Candidate {
                    text: self.tokenizer.decode(run.text_ids(eos))?,
                    ids: run.new_ids().to_vec(),
                    logprobs: run.logprobs,
                    params: spec.params,
                    seed: spec.seed,
                    finish_reason: run.finish.unwrap_or(FinishReason::Stopped),
                    hidden_mean,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Generation {
            candidates,
            stats: self.stats,
        })
    }
}
