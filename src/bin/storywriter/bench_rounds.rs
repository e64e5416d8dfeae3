//! `storywriter bench --story-tokens …`: the time of a writing round (three candidates) as the
//! story grows, with the caches kept between rounds as the writer and the web worker keep them.

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use storywriter::engine::generate::{CachePool, CandidateSpec};
use storywriter::engine::loader::LoadedModel;
use storywriter::engine::sampling::SamplingParams;

/// Tokens the writer types between two rounds.
const TYPED_TOKENS: u32 = 5;

/// For each story length: a first round on a story of that many tokens (nothing cached: the
/// whole story runs), then `rounds` rounds that each continue the first candidate plus a few
/// typed tokens (only those run). Candidates decode `new_tokens` tokens each (no early end).
/// The lengths take their rounds in turn (every length's round before anyone's next), so that
/// the machine's drift over the run falls on every length alike, not on the last ones.
pub fn story_rounds(
    loaded: &LoadedModel,
    story_tokens: &[usize],
    rounds: usize,
    new_tokens: usize,
    candidates: usize,
) -> Result<Vec<Value>> {
    if story_tokens.contains(&0) || candidates == 0 || new_tokens == 0 {
        bail!("--story-tokens, --new-tokens and --candidates must be at least 1");
    }
    let max_id = loaded.tokenizer.max_token_id().max(4);
    let eos = loaded.model.config().eos_token_id;
    let pseudo = |i: u32| {
        let id = 4 + (i * 7919) % (max_id - 3);
        if id == eos {
            id + 1
        } else {
            id
        }
    };
    let specs: Vec<CandidateSpec> = (0..candidates)
        .map(|i| CandidateSpec {
            params: SamplingParams {
                temperature: 0.8 + 0.1 * i as f32,
                top_k: 40,
                max_new_tokens: new_tokens,
                ..SamplingParams::default()
            },
            seed: i as u64,
        })
        .collect();
    let mut stories: Vec<BenchStory> = story_tokens
        .iter()
        .map(|&length| BenchStory {
            length,
            pool: CachePool::default(),
            ids: (0..length as u32).map(pseudo).collect(),
            times: vec![],
        })
        .collect();
    for round in 0..=rounds {
        for story in &mut stories {
            let start = Instant::now();
            let generation = (story.pool).generate(
                &loaded.model,
                &loaded.tokenizer,
                &story.ids,
                &specs,
                |_| ControlFlow::Continue(()),
            )?;
            let seconds = start.elapsed().as_secs_f64();
            story.times.push(json!({
                "round": round,
                "story_tokens": story.ids.len(),
                "prompt_tokens_run": generation.stats.prompt_tokens,
                "reused_tokens": generation.stats.reused_tokens,
                "generated_tokens": generation.stats.generated_tokens,
                "round_s": seconds,
                "prefill_s": generation.stats.prefill_s,
                "decode_s": generation.stats.decode_s,
            }));
            let chosen = &generation.candidates[0].ids;
            story.ids.extend(chosen.iter().filter(|&&id| id != eos));
            let at = story.ids.len() as u32;
            story.ids.extend((0..TYPED_TOKENS).map(|i| pseudo(at + i)));
        }
    }
    Ok(stories
        .into_iter()
        .map(|story| {
            let steady: Vec<f64> = story.times[1..]
                .iter()
                .filter_map(|t| t["round_s"].as_f64())
                .collect();
            json!({
                "story_tokens": story.length,
                "first_round_s": story.times[0]["round_s"],
                "kept_cache_round_s_median": median(&steady),
                "rounds": story.times,
            })
        })
        .collect())
}

/// One story length's state between its rounds.
struct BenchStory {
    /// The length asked for.
    length: usize,
    /// The caches kept between its rounds.
    pool: CachePool,
    /// Its ids so far.
    ids: Vec<u32>,
    /// Each round's figures.
    times: Vec<Value>,
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}
