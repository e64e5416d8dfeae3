//! A story's rounds run on a loaded model: the one place where the data layer's [`Story`] meets
//! the engine.

use std::ops::ControlFlow;

use crate::data::records::CandidateRecord;
use crate::data::story::{PlannedCandidate, Story};
use crate::engine::generate::{generate, CandidateSpec, TokenEvent};
use crate::engine::loader::LoadedModel;
use crate::error::{Error, Result};

/// Generates one round of candidates continuing the story's text, streaming tokens to
/// `on_token`, and records them as the pending candidates (input: [`round_input_ids`]).
pub fn write_round(
    story: &mut Story,
    model: &LoadedModel,
    planned: &[PlannedCandidate],
    on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<CandidateRecord>> {
    let specs = candidate_specs(planned);
    let ids = round_input_ids(model, &story.text, &specs)?;
    let generation = generate(&model.model, &model.tokenizer, &ids, &specs, on_token)?;
    Ok(story
        .add_round(&ids, planned, &generation.candidates, &model.identity)?
        .to_vec())
}

/// What the engine needs of each planned candidate: its parameters and seed.
pub fn candidate_specs(planned: &[PlannedCandidate]) -> Vec<CandidateSpec> {
    planned
        .iter()
        .map(|p| CandidateSpec {
            params: p.params.clone(),
            seed: p.seed,
        })
        .collect()
}

/// The token ids a round of `candidates` continuing `text` feeds the model: the text's last
/// tokens that leave room for the longest candidate inside the model's context. Fails on an
/// empty text.
pub fn round_input_ids(
    model: &LoadedModel,
    text: &str,
    candidates: &[CandidateSpec],
) -> Result<Vec<u32>> {
    let longest = candidates
        .iter()
        .map(|c| c.params.max_new_tokens)
        .max()
        .unwrap_or(0);
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
