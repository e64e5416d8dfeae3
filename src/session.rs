//! A story's rounds run on a loaded model: the one place where the data layer's [`Story`] meets
//! the engine.

use std::ops::ControlFlow;

use crate::data::records::CandidateRecord;
use crate::data::story::{PlannedCandidate, Story};
use crate::engine::generate::{generate, CandidateSpec, TokenEvent};
use crate::engine::loader::LoadedModel;
use crate::error::{Error, Result};

/// Generates one round of candidates continuing the story's text, streaming tokens to
/// `on_token`, and records them as the pending candidates. The input is the text's last tokens
/// that leave room for the longest candidate inside the model's context.
pub fn write_round(
    story: &mut Story,
    model: &LoadedModel,
    planned: &[PlannedCandidate],
    on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<CandidateRecord>> {
    let longest = planned
        .iter()
        .map(|p| p.params.max_new_tokens)
        .max()
        .unwrap_or(0);
    let ids = round_input_ids(model, &story.text, longest)?;
    let specs: Vec<CandidateSpec> = planned
        .iter()
        .map(|p| CandidateSpec {
            params: p.params.clone(),
            seed: p.seed,
        })
        .collect();
    let generation = generate(&model.model, &model.tokenizer, &ids, &specs, on_token)?;
    Ok(story
        .add_round(&ids, planned, &generation.candidates, &model.identity)?
        .to_vec())
}

/// The token ids a round continuing `text` feeds the model: the text's last tokens that leave
/// room for `longest` new tokens inside the model's context. Fails on an empty text.
pub fn round_input_ids(model: &LoadedModel, text: &str, longest: usize) -> Result<Vec<u32>> {
    let mut ids = model.tokenizer.encode(text)?;
    if ids.is_empty() {
        return Err(Error::Invalid(
            "the story is empty: write an opening first".into(),
        ));
    }
    let room = model
        .model
        .config()
        .context_length
        .saturating_sub(longest)
        .max(1);
    ids.drain(..ids.len().saturating_sub(room));
    Ok(ids)
}
