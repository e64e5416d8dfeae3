//! The shapes of the JSON fixtures in tests/fixtures/, shared by the native and wasm tests.
#![allow(dead_code)] // each test binary reads a different subset of the fields

use std::ops::ControlFlow;

use serde::Deserialize;
use storywriter::generate::{generate, CandidateSpec};
use storywriter::loader::LoadedModel;
use storywriter::sampling::SamplingParams;
use storywriter::story::PlannedCandidate;

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

/// Checks the parameter draws pinned bit for bit (ChaCha20 stream `step << 32 | candidate`,
/// polar method): a record replayed later, natively or in wasm32, gets the same parameters from
/// the same seed.
pub fn check_pinned_param_draws() {
    use storywriter::params::{candidate_params, PolicyMix, StepTable};
    let mix: PolicyMix = "step-sample,coupled-random".parse().unwrap();
    let out = candidate_params(&StepTable::bundled(), &mix, 2, 7);
    let got: Vec<[u64; 6]> = out
        .iter()
        .map(|(p, _)| {
            [
                p.temperature.to_bits().into(),
                p.top_k as u64,
                p.top_p.to_bits().into(),
                p.typical_p.to_bits().into(),
                p.repetition_penalty.to_bits().into(),
                p.max_new_tokens as u64,
            ]
        })
        .collect();
    let recorded = [
        [1063566565, 54, 1064033992, 1064818890, 1066209776, 33],
        [1063322078, 46, 1064224100, 1064803203, 1066666618, 31],
    ];
    assert_eq!(got, recorded, "{out:?}");
}

/// A planned candidate with the default parameters but `max_new_tokens`, policy "fixed", no
/// table and no design: what the tests of a round write with.
pub fn fixed_candidate(max_new_tokens: usize, seed: u64) -> PlannedCandidate {
    PlannedCandidate {
        params: SamplingParams {
            max_new_tokens,
            ..SamplingParams::default()
        },
        policy: "fixed".into(),
        param_table: None,
        seed,
        design: None,
    }
}
