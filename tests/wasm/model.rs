//! The model, tokenizer and sampler compiled to wasm32 and run in headless Chromium, on the
//! same fixtures as the native parity tests (compiled in with `include_bytes!`).

use std::ops::ControlFlow;

use crate::common::{fixed_candidate, Reference, Sampled, TokenizerCases};
use candle_core::{Device, Tensor};
use storywriter::generate::{generate, CachePool, CandidateSpec};
use storywriter::loader::{load_gguf, open_hf, LoadedModel, TensorStore};
use storywriter::sampling::SamplingParams;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        ))
    };
}

const POW2_GGUF: &[u8] = fixture!("tiny-pow2-llamacpp-f32.gguf");
const POW2_REFERENCE: &[u8] = fixture!("tiny-pow2/reference.json");
const ODD_CONFIG: &[u8] = fixture!("tiny-odd/config.json");
const ODD_TOKENIZER: &[u8] = fixture!("tiny-odd/tokenizer.json");
const ODD_WEIGHTS: &[u8] = fixture!("tiny-odd/model.safetensors");
const ODD_REFERENCE: &[u8] = fixture!("tiny-odd/reference.json");
const TOKENIZER_CASES: &[u8] = fixture!("tokenizer_cases.json");
const SAMPLED: &[u8] = fixture!("sampled_tokens.json");

fn check(model: &LoadedModel, reference: &[u8], label: &str) {
    let reference: Reference = serde_json::from_slice(reference).unwrap();
    let mut worst = 0f32;
    for case in &reference.cases {
        let ids = model.tokenizer.encode(&case.prompt).unwrap();
        assert_eq!(ids, case.input_ids, "{label} {}: tokenization", case.name);
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<f32> = model
            .model
            .forward(&input, &mut model.model.new_cache(), &[ids.len() - 1])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = logits
            .iter()
            .zip(&case.last_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-4,
            "{label} {}: logits differ by {diff}",
            case.name
        );
        worst = worst.max(diff);
        let params = SamplingParams {
            greedy: true,
            max_new_tokens: case.greedy_new_ids.len(),
            ..Default::default()
        };
        let out = generate(
            &model.model,
            &model.tokenizer,
            &ids,
            &[CandidateSpec { params, seed: 0 }],
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(
            out.candidates[0].ids, case.greedy_new_ids,
            "{label} {}: greedy",
            case.name
        );
    }
    console_log!(
        "{label}: logits within {worst:e} of transformers, greedy continuations identical"
    );
}

#[wasm_bindgen_test]
fn gguf_model_matches_transformers_in_the_browser() {
    let model = load_gguf(POW2_GGUF, "tiny-pow2-llamacpp-f32.gguf", &Device::Cpu).unwrap();
    check(&model, POW2_REFERENCE, "gguf f32");
}

#[wasm_bindgen_test]
fn hf_f16_checkpoint_matches_transformers_in_the_browser() {
    let tensors = candle_core::safetensors::load_buffer(ODD_WEIGHTS, &Device::Cpu).unwrap();
    let config = std::str::from_utf8(ODD_CONFIG).unwrap();
    let opened = open_hf(
        config,
        ODD_TOKENIZER,
        TensorStore::Loaded(tensors),
        "tiny-odd",
        String::new(),
        &Device::Cpu,
    )
    .unwrap();
    check(
        &opened.build(&Device::Cpu).unwrap(),
        ODD_REFERENCE,
        "hf f16, 6 heads",
    );
}

#[wasm_bindgen_test]
fn tokenizer_from_gguf_matches_transformers_in_the_browser() {
    let model = load_gguf(POW2_GGUF, "tiny-pow2-llamacpp-f32.gguf", &Device::Cpu).unwrap();
    let cases: TokenizerCases = serde_json::from_slice(TOKENIZER_CASES).unwrap();
    for case in &cases.cases {
        assert_eq!(
            model.tokenizer.encode(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

/// Same model, prompt, parameters and seed give the same tokens as natively
/// (tests/fixtures/sampled_tokens.json was written by the native CLI;
/// tests/integration/parity/ checks the native side).
#[wasm_bindgen_test]
fn seeded_sampling_gives_the_native_tokens() {
    let model = load_gguf(POW2_GGUF, "tiny-pow2-llamacpp-f32.gguf", &Device::Cpu).unwrap();
    let sampled: Sampled = serde_json::from_slice(SAMPLED).unwrap();
    sampled.check_reproduced_by(&model);
}

/// A story round in the browser: ids, seeds and timestamps come from the browser's crypto and
/// clock, and the records are complete.
#[wasm_bindgen_test]
fn a_story_round_is_recorded_in_the_browser() {
    use storywriter::session::write_round;
    use storywriter::story::{PlannedCandidate, Story};
    let model = load_gguf(POW2_GGUF, "tiny-pow2.gguf", &Device::Cpu).unwrap();
    let mut story = Story::new("Once upon a time");
    let planned: Vec<PlannedCandidate> = (0..3)
        .map(|i| fixed_candidate(4 + i, storywriter::records::new_seed()))
        .collect();
    let records = write_round(
        &mut story,
        &model,
        &mut CachePool::default(),
        &planned,
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(records.len(), 3);
    assert!(planned.iter().all(|p| p.seed < 1 << 53));
    for record in &records {
        assert_eq!(record.record_id.len(), 32);
        // e.g. 2026-11-29T07:20:56.123Z
        assert_eq!(record.created_at.len(), 24, "{}", record.created_at);
        assert!(record.created_at.starts_with("20") && record.created_at.ends_with('Z'));
    }
    let chosen = story.choose(&records[1].record_id, "human").unwrap();
    assert!(chosen.chosen_at.is_some());
    assert_eq!(story.path.len(), 1);
}

/// The parameter policies draw the same bits in the browser as natively.
#[wasm_bindgen_test]
fn parameter_draws_match_the_native_ones() {
    crate::common::check_pinned_param_draws();
}
