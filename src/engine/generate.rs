//! Generating several candidate continuations of one prompt, decoded together as a batch.
//!
//! The prompt is run once; its cache is forked into one sequence per candidate; every step runs
//! all unfinished candidates through the model in one batched forward pass and lets each
//! candidate's own seeded [`Sampler`] pick its next token. When the story outgrows the model's
//! context, the oldest cached positions are dropped (ALiBi needs no position re-encoding).

use std::ops::ControlFlow;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::engine::model::Bloom;
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
    /// Seconds spent on the prompt.
    pub prefill_s: f64,
    /// Tokens generated over all candidates.
    pub generated_tokens: usize,
    /// Batched decode steps.
    pub decode_steps: usize,
    /// Seconds spent decoding.
    pub decode_s: f64,
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
/// every token (return `ControlFlow::Break(())` to stop all candidates).
pub fn generate(
    model: &Bloom,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    specs: &[CandidateSpec],
    mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    if prompt_ids.is_empty() {
        return Err(Error::Invalid(
            "the prompt is empty: give at least one token".into(),
        ));
    }
    if specs.is_empty() {
        return Ok(Generation {
            candidates: vec![],
            stats: GenerationStats::default(),
        });
    }
    let config = model.config();
    let context_length = config.context_length;
    let eos = config.eos_token_id;
    let mut running = specs
        .iter()
        .map(|spec| {
            Ok(Running {
                sampler: Sampler::new(spec.params.clone(), spec.seed)?,
                context: prompt_ids.to_vec(),
                prompt_len: prompt_ids.len(),
                logprobs: vec![],
                emitted: 0,
                finish: (spec.params.max_new_tokens == 0).then_some(FinishReason::Length),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    // Prefill the prompt once (its last `context_length` tokens), then fork per candidate.
    let mut stats = GenerationStats::default();
    let start = Instant::now();
    let window = &prompt_ids[prompt_ids.len().saturating_sub(context_length)..];
    stats.prompt_tokens = window.len();
    let mut cache = model.new_cache();
    let input = Tensor::new(window, model.device())?.unsqueeze(0)?;
    let logits = model.forward(&input, &mut cache, &[window.len() - 1])?;
    let mut rows: Vec<Vec<f32>> = vec![logits.flatten_all()?.to_vec1()?; specs.len()];
    stats.prefill_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut active: Vec<usize> = (0..specs.len())
        .filter(|&i| running[i].finish.is_none())
        .collect();
    let mut cache = cache.fork(active.len().max(1))?;
    let mut stopped = false;
    while !active.is_empty() {
        // Sample one token per active candidate from its row of logits.
        for (row, &i) in rows.iter().zip(&active) {
            let run = &mut running[i];
            let id = run.sampler.sample(row, &run.context)?;
            run.context.push(id);
            run.logprobs.push(log_prob(row, id));
            stats.generated_tokens += 1;
            let text = tokenizer.decode(run.text_ids(eos))?;
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
            if !stopped
                && on_token(TokenEvent {
                    candidate: i,
                    id,
                    text: delta,
                })
                .is_break()
            {
                stopped = true;
            }
        }
        if stopped {
            for &i in &active {
                running[i].finish.get_or_insert(FinishReason::Stopped);
            }
        }
        // Drop finished candidates from the batch, then run the others one step.
        let still: Vec<usize> = (0..active.len())
            .filter(|&k| running[active[k]].finish.is_none())
            .collect();
        if still.is_empty() {
            break;
        }
        if still.len() != active.len() {
            cache = cache.select(&still)?;
            active = still.iter().map(|&k| active[k]).collect();
        }
        if cache.len() + 1 > context_length {
            cache = cache.slide((context_length / 8).max(1))?;
        }
        let last: Vec<u32> = active
            .iter()
            .map(|&i| *running[i].context.last().expect("one token"))
            .collect();
        let input = Tensor::new(last.as_slice(), model.device())?.unsqueeze(1)?;
        let logits = model.forward(&input, &mut cache, &[0])?;
        rows = logits.squeeze(1)?.to_vec2()?;
        stats.decode_steps += 1;
    }
    stats.decode_s = start.elapsed().as_secs_f64();

    let candidates = running
        .into_iter()
        .zip(specs)
        .map(|(run, spec)| {
            Ok(Candidate {
                text: tokenizer.decode(run.text_ids(eos))?,
                ids: run.new_ids().to_vec(),
                logprobs: run.logprobs,
                params: spec.params.clone(),
                seed: spec.seed,
                finish_reason: run.finish.unwrap_or(FinishReason::Length),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Generation { candidates, stats })
}
