//! The shapes of the JSON fixtures in tests/fixtures/, shared by the native and wasm tests.
#![allow(dead_code)] // each test binary reads a different subset of the fields

use std::ops::ControlFlow;

use serde::Deserialize;
use storywriter::generate::{generate, CandidateSpec};
use storywriter::loader::LoadedModel;
use storywriter::sampling::SamplingParams;

/// `<model>/reference.json`: what transformers computed for each prompt.
#[derive(Deserialize)]
pub struct Reference {
    pub cases: Vec<Case>,
}

/// One prompt of a reference file.
#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub prompt: String,
    pub input_ids: Vec<u32>,
    pub last_logits: Vec<f32>,
    pub greedy_new_ids: Vec<u32>,
}

/// `tokenizer_cases.json`: ids and decodings from the Hugging Face tokenizer.
#[derive(Deserialize)]
pub struct TokenizerCases {
    pub cases: Vec<TokenizerCase>,
}

/// One text of `tokenizer_cases.json`.
#[derive(Deserialize)]
pub struct TokenizerCase {
    pub text: String,
    pub ids: Vec<u32>,
    pub decoded: String,
}

/// `sampled_tokens.json`: seeded candidates as the native CLI generated them.
#[derive(Deserialize)]
pub struct Sampled {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub candidates: Vec<SampledCandidate>,
}

/// One candidate of `sampled_tokens.json`.
#[derive(Deserialize)]
pub struct SampledCandidate {
    pub params: SamplingParams,
    pub seed: u64,
    pub ids: Vec<u32>,
}

impl Sampled {
    /// Generates the recorded candidates again with `model` and checks every token.
    pub fn check_reproduced_by(&self, model: &LoadedModel) {
        let specs: Vec<CandidateSpec> = self
            .candidates
            .iter()
            .map(|c| CandidateSpec {
                params: c.params.clone(),
                seed: c.seed,
            })
            .collect();
        let out = generate(
            &model.model,
            &model.tokenizer,
            &self.prompt_ids,
            &specs,
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        for (got, expected) in out.candidates.iter().zip(&self.candidates) {
            assert_eq!(got.ids, expected.ids, "seed {}", expected.seed);
        }
    }
}
