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

/// Checks that activations quantized to q8_0 (`QuantizedRows`: on wasm32 on SIMD lanes, else
/// one value at a time) give candle's own quantization bit for bit: exact halves round away
/// from zero at scale 1, and NaN, infinities, a subnormal maximum (whose inverse scale
/// overflows) and zero blocks give what candle's scalar loop gives.
pub fn check_activations_quantize_like_candle() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use storywriter::engine::kernels::q8_act::{QuantizedRows, BLOCK};

    let mut x: Vec<f32> = vec![127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, -0.0];
    x.resize(BLOCK, 0.25);
    x.extend(values(40 * BLOCK, 9, 3.0));
    let specials = [f32::NAN, f32::INFINITY, -f32::INFINITY, 1e-40, -1e-40, 0.0];
    for (b, special) in specials.into_iter().enumerate() {
        let mut block = values(BLOCK, 10 + b as u32, 1e-40);
        block[b] = special;
        x.extend(block);
    }
    x.extend([0.0; BLOCK]);
    let k = x.len();
    let ours = QuantizedRows::new(&x, k);
    let tensor = Tensor::from_vec(x, (1, k), &Device::Cpu).unwrap();
    let candle = QTensor::quantize(&tensor, GgmlDType::Q8_0).unwrap();
    for (b, block) in candle.data().unwrap().chunks_exact(2 + BLOCK).enumerate() {
        let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let quants: Vec<i8> = block[2..].iter().map(|&q| q as i8).collect();
        assert_eq!(ours.scales[b].to_bits(), scale.to_bits(), "block {b} scale");
        assert_eq!(
            &ours.quants[b * BLOCK..(b + 1) * BLOCK],
            quants,
            "block {b}"
        );
        let sum: i32 = quants.iter().map(|&q| q as i32).sum();
        assert_eq!(ours.sums[b], sum, "block {b} sum");
    }
    assert_eq!(ours.quants[1..9], [1, -1, 2, -2, 3, -3, 127, -127]);
}

/// Deterministic pseudo-random values in [-1, 1] (xorshift, no RNG crate needed), scaled.
pub fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
