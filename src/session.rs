//! A story's rounds run on a loaded model: the one place where the data layer's [`Story`] meets
//! the engine.

use std::ops::ControlFlow;

use crate::data::records::CandidateRecord;
use crate::data::story::{PlannedCandidate, Story, TokenPrefix};
use crate::engine::generate::{CachePool, CandidateSpec, TokenEvent};
use crate::engine::loader::LoadedModel;
use crate::error::{Error, Result};

/// Generates one round of candidates continuing the story, streaming tokens to `on_token`, and
/// records them as the pending candidates. The input is [`round_input_ids`]; `pool` holds the
/// caches of earlier rounds, so only the tokens after what it already holds are run.
pub fn write_round(
    story: &mut Story,
    model: &LoadedModel,
    pool: &mut CachePool,
    planned: &[PlannedCandidate],
    on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<CandidateRecord>> {
    let specs = candidate_specs(planned);
    let ids = round_input_ids(model, &story.text, story.token_prefix().as_ref(), &specs)?;
    let generation = pool.generate(&model.model, &model.tokenizer, &ids, &specs, on_token)?;
    Ok(story
        .add_round(&ids, planned, &generation.candidates, &model.identity)?
        .to_vec())
}

/// What the engine generates for each planned candidate.
pub fn candidate_specs(planned: &[PlannedCandidate]) -> Vec<CandidateSpec> {
    planned
        .iter()
        .map(|p| CandidateSpec {
            params: p.params.clone(),
            seed: p.seed,
        })
        .collect()
}

/// The token ids a round continuing `text` feeds the model: `known`'s ids (the records' ids for
/// the text's beginning) followed by the rest of the text tokenized, or the whole text
/// tokenized. When that leaves no room for the longest candidate inside the model's context,
/// the oldest tokens are dropped in steps of a quarter of the context, so the window moves
/// once per overflow and the rounds between reuse the same cached beginning. Fails on an empty
/// text.
pub fn round_input_ids(
    model: &LoadedModel,
    text: &str,
    known: Option<&TokenPrefix>,
    specs: &[CandidateSpec],
) -> Result<Vec<u32>> {
    let mut ids = match known.filter(|k| text.is_char_boundary(k.text_len)) {
        Some(known) => {
            let rest = model.tokenizer.encode(&text[known.text_len..])?;
            [known.ids.as_slice(), rest.as_slice()].concat()
        }
        None => model.tokenizer.encode(text)?,
    };
    if ids.is_empty() {
        return Err(Error::Invalid(
            "the story is empty: write an opening first".into(),
        ));
    }
    let longest = specs
        .iter()
        .map(|s| s.params.max_new_tokens)
        .max()
        .unwrap_or(0);
    let context = model.model.config().context_length;
    let room = context.saturating_sub(longest).max(1);
    if ids.len() > room {
        let step = (context / 4).max(1);
        let drop = (ids.len() - room).div_ceil(step) * step;
        ids.drain(..drop.min(ids.len() - 1));
    }
    Ok(ids)
}
