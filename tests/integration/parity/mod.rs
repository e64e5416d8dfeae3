//! Parity with Hugging Face `transformers` on the fixtures `scripts/make_fixtures.py` made:
//! last-position logits, greedy continuations and tokenizer ids, for Hugging Face directories,
//! GGUF files written the way llama.cpp's converter writes them, and our own quantizer's output.

use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::common::{Reference, Sampled, TokenizerCases};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use storywriter::generate::{generate, CandidateSpec};
use storywriter::gguf::{write_gguf, TensorTypes};
use storywriter::loader::{load_gguf, native, LoadedModel};
use storywriter::sampling::SamplingParams;

mod quantized;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference(model: &str) -> Reference {
    let path = fixture(model).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn load(name: &str) -> LoadedModel {
    native::load(&fixture(name), &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn last_logits(model: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut cache = model.model.new_cache();
    let logits = model
        .model
        .forward(&input, &mut cache, &[ids.len() - 1])
        .unwrap();
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn greedy(model: &LoadedModel, ids: &[u32], n: usize) -> Vec<u32> {
    let params = SamplingParams {
        greedy: true,
        max_new_tokens: n,
        ..SamplingParams::default()
    };
    let spec = CandidateSpec { params, seed: 0 };
    let out = generate(&model.model, &model.tokenizer, ids, &[spec], |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    out.candidates[0].ids.clone()
}

/// Checks every reference case: tokenization, logits within `tolerance`, greedy tokens.
fn check_against_reference(model: &LoadedModel, reference: &Reference, tolerance: f32) -> f32 {
    let mut worst = 0f32;
    for case in &reference.cases {
        let ids = model.tokenizer.encode(&case.prompt).unwrap();
        assert_eq!(ids, case.input_ids, "{}: tokenization differs", case.name);
        let logits = last_logits(model, &ids);
        let diff = max_abs_diff(&logits, &case.last_logits);
        assert!(
            diff <= tolerance,
            "{}: logits differ by {diff} (tolerance {tolerance})",
            case.name
        );
        worst = worst.max(diff);
        let new = greedy(model, &ids, case.greedy_new_ids.len());
        assert_eq!(
            new, case.greedy_new_ids,
            "{}: greedy continuation differs",
            case.name
        );
    }
    worst
}

#[test]
fn f32_checkpoint_with_prefix_matches_transformers() {
    let diff = check_against_reference(&load("tiny-pow2"), &reference("tiny-pow2"), 1e-4);
    eprintln!("tiny-pow2 (f32, 4 heads): max |Δlogit| = {diff:e}");
}

#[test]
fn f16_checkpoint_without_prefix_old_config_and_odd_heads_matches_transformers() {
    let diff = check_against_reference(&load("tiny-odd"), &reference("tiny-odd"), 1e-4);
    eprintln!("tiny-odd (f16, 6 heads, post-layernorm residual): max |Δlogit| = {diff:e}");
}

#[test]
fn sharded_bf16_checkpoint_matches_transformers() {
    let diff = check_against_reference(&load("tiny-sharded"), &reference("tiny-sharded"), 1e-4);
    eprintln!("tiny-sharded (bf16, 5 heads): max |Δlogit| = {diff:e}");
}

/// The root mean square of `logits − reference` over the reference's standard deviation: the
/// error relative to the logits' spread.
fn relative_rms(logits: &[f32], reference: &[f32]) -> f32 {
    let n = reference.len() as f32;
    let mean = reference.iter().sum::<f32>() / n;
    let std = (reference.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    let rms = (logits
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        / n)
        .sqrt();
    rms / std
}

/// The f16 KV cache (the web worker's) rounds keys and values to f16: every checkpoint's logits
/// stay within the tolerance of an f16 checkpoint (`quantized_round_trip_stays_close`: 4e-3 of
/// the logits' spread), with the same top token and the same greedy continuations. (It does not
/// keep f32's 1e-4: measured 1.3e-2 at most in absolute terms on logits of spread 2–3.)
#[test]
fn f16_kv_cache_stays_within_the_f16_tolerance() {
    for name in ["tiny-pow2", "tiny-odd", "tiny-sharded"] {
        let mut model = load(name);
        model.model.set_kv_dtype(storywriter::model::KvDtype::F16);
        let reference = reference(name);
        let mut worst = 0f32;
        for case in &reference.cases {
            let logits = last_logits(&model, &case.input_ids);
            worst = worst.max(relative_rms(&logits, &case.last_logits));
            assert_eq!(
                argmax(&logits),
                argmax(&case.last_logits),
                "{name} {}: top token changed",
                case.name
            );
            let new = greedy(&model, &case.input_ids, case.greedy_new_ids.len());
            assert_eq!(
                new, case.greedy_new_ids,
                "{name} {}: greedy differs",
                case.name
            );
        }
        eprintln!("{name} with an f16 KV cache: rms |Δlogit| / std = {worst:.2e}");
        assert!(worst <= 4e-3, "{name}: {worst} > 4e-3");
    }
}

#[test]
fn tokenizer_matches_transformers_and_survives_gguf() {
    let path = fixture("tokenizer_cases.json");
    let cases: TokenizerCases =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hf = load("tiny-pow2");
    // The tokenizer rebuilt from GGUF metadata written the way llama.cpp's converter writes it.
    let bytes = std::fs::read(fixture("tiny-pow2-llamacpp-f32.gguf")).unwrap();
    let gguf = load_gguf(&bytes, "tiny-pow2-llamacpp-f32.gguf", &Device::Cpu).unwrap();
    for case in &cases.cases {
        for (source, model) in [("tokenizer.json", &hf), ("gguf", &gguf)] {
            let ids = model.tokenizer.encode(&case.text).unwrap();
            assert_eq!(ids, case.ids, "{source}: ids of {:?}", case.text);
            let text = model.tokenizer.decode(&ids).unwrap();
            assert_eq!(text, case.decoded, "{source}: decoding of {:?}", case.text);
        }
    }
}

#[test]
fn gguf_written_like_llama_cpp_matches_transformers() {
    let name = "tiny-pow2-llamacpp-f32.gguf";
    let bytes = std::fs::read(fixture(name)).unwrap();
    let model = load_gguf(&bytes, name, &Device::Cpu).unwrap();
    let diff = check_against_reference(&model, &reference("tiny-pow2"), 1e-4);
    eprintln!("{name}: max |Δlogit| = {diff:e}");
}

#[test]
fn batched_candidates_equal_single_runs() {
    let model = load("tiny-pow2");
    let ids = model
        .tokenizer
        .encode("Once upon a time, in a quiet village")
        .unwrap();
    let params = |t: f32| SamplingParams {
        temperature: t,
        top_k: 20,
        max_new_tokens: 12,
        ..SamplingParams::default()
    };
    let specs: Vec<CandidateSpec> = [(0.7, 1), (1.0, 2), (1.3, 3)]
        .map(|(t, seed)| CandidateSpec {
            params: params(t),
            seed,
        })
        .to_vec();
    let batched = generate(&model.model, &model.tokenizer, &ids, &specs, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    for (i, spec) in specs.iter().enumerate() {
        let single = generate(
            &model.model,
            &model.tokenizer,
            &ids,
            std::slice::from_ref(spec),
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(
            batched.candidates[i].ids, single.candidates[0].ids,
            "candidate {i}"
        );
        let (a, b) = (
            &batched.candidates[i].logprobs,
            &single.candidates[0].logprobs,
        );
        assert!(
            max_abs_diff(a, b) < 1e-4,
            "candidate {i}: log-probs {a:?} vs {b:?}"
        );
    }
    assert_eq!(
        batched.stats.decode_steps, 11,
        "one batched step per token after the first"
    );
}

#[test]
fn streamed_text_is_the_candidate_text_and_stop_works() {
    let model = load("tiny-pow2");
    let ids = model.tokenizer.encode("The emoji 🦀 and").unwrap();
    let specs: Vec<CandidateSpec> = (0..3)
        .map(|seed| CandidateSpec {
            params: SamplingParams {
                max_new_tokens: 16,
                ..Default::default()
            },
            seed,
        })
        .collect();
    let mut streamed = vec![String::new(); 3];
    let out = generate(&model.model, &model.tokenizer, &ids, &specs, |e| {
        streamed[e.candidate].push_str(e.text);
        ControlFlow::Continue(())
    })
    .unwrap();
    for (c, s) in out.candidates.iter().zip(&streamed) {
        assert_eq!(c.text.trim_end_matches('\u{FFFD}'), s.as_str());
    }
    let mut seen = 0;
    let stopped = generate(&model.model, &model.tokenizer, &ids, &specs, |_| {
        seen += 1;
        if seen == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    let total: usize = stopped.candidates.iter().map(|c| c.ids.len()).sum();
    assert!(total <= 6, "stopped after {total} tokens");
    assert!(stopped
        .candidates
        .iter()
        .all(|c| c.finish_reason == storywriter::generate::FinishReason::Stopped));
}

/// The seeded tokens recorded in tests/fixtures/sampled_tokens.json (by the CLI command named
/// there) come out again; tests/wasm_model.rs checks the browser gets the same ones.
#[test]
fn seeded_sampling_is_reproducible() {
    let name = "tiny-pow2-llamacpp-f32.gguf";
    let model = load_gguf(&std::fs::read(fixture(name)).unwrap(), name, &Device::Cpu).unwrap();
    let sampled: Sampled =
        serde_json::from_str(&std::fs::read_to_string(fixture("sampled_tokens.json")).unwrap())
            .unwrap();
    assert_eq!(
        model.tokenizer.encode(&sampled.prompt).unwrap(),
        sampled.prompt_ids
    );
    sampled.check_reproduced_by(&model);
    let distinct: std::collections::HashSet<&Vec<u32>> =
        sampled.candidates.iter().map(|c| &c.ids).collect();
    assert_eq!(
        distinct.len(),
        3,
        "different seeds give different candidates"
    );
}

/// The legacy converter layout: f16 weights and a separate `output` copy of the embeddings.
/// llama.cpp's graph has no post-layernorm residual, so this file is compared with the
/// reference transformers computed with that flag off (see tests/fixtures/README.md).
#[test]
fn legacy_f16_gguf_with_output_tensor_matches_transformers() {
    let name = "tiny-odd-llamacpp-f16.gguf";
    let model = load_gguf(&std::fs::read(fixture(name)).unwrap(), name, &Device::Cpu).unwrap();
    let path = fixture("tiny-odd-llamacpp-f16.reference.json");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let diff = check_against_reference(&model, &reference, 1e-4);
    eprintln!("{name}: max |Δlogit| = {diff:e}");
}

#[test]
fn truncated_cache_recomputes_the_same_logits() {
    let model = load("tiny-pow2");
    let ids = model
        .tokenizer
        .encode("A story about a cat, a dog and a very old tree")
        .unwrap();
    let (head, tail) = ids.split_at(6);
    let mut cache = model.model.new_cache();
    let run = |cache: &mut storywriter::model::KvCache, part: &[u32]| -> Vec<f32> {
        let input = Tensor::new(part, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model
            .model
            .forward(&input, cache, &[part.len() - 1])
            .unwrap();
        logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    run(&mut cache, head);
    let first = run(&mut cache, tail);
    // Forget the tail and feed it again: the same logits as before.
    cache.truncate(head.len());
    let again = run(&mut cache, tail);
    assert!(max_abs_diff(&first, &again) < 1e-5);
    // And the same as the whole text in one pass.
    assert!(max_abs_diff(&first, &last_logits(&model, &ids)) < 1e-4);
}

#[test]
fn generation_slides_past_the_context_length() {
    let mut model = load("tiny-pow2");
    model.model.set_context_length(16);
    let ids = model.tokenizer.encode("It was a dark night").unwrap();
    assert!(ids.len() < 16);
    let new = greedy(&model, &ids, 40);
    assert_eq!(
        new.len(),
        40,
        "generation went on past the 16-position context"
    );
    // A prompt longer than the context keeps only its last positions.
    let long: Vec<u32> = ids.iter().cycle().take(50).copied().collect();
    let from_long = greedy(&model, &long, 4);
    let from_tail = greedy(&model, &long[long.len() - 16..], 4);
    assert_eq!(
        from_long, from_tail,
        "a long prompt is cut to its last 16 tokens"
    );
}

#[test]
fn cache_slide_keeps_the_newest_positions() {
    let model = load("tiny-pow2");
    let ids = model
        .tokenizer
        .encode("one two three four five six seven eight nine ten")
        .unwrap();
    let mut cache = model.model.new_cache();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model.model.forward(&input, &mut cache, &[0]).unwrap();
    let slid = cache.slide(3).unwrap();
    assert_eq!(slid.len(), ids.len() - 3);
    let forked = slid.fork(3).unwrap();
    assert_eq!((forked.len(), forked.batch_size()), (ids.len() - 3, 3));
    let picked = forked.select(&[2, 0]).unwrap();
    assert_eq!(picked.batch_size(), 2);
    assert!(
        forked.select(&[3]).is_err(),
        "selecting a sequence that is not there is an error"
    );
}

#[test]
fn end_of_sequence_stops_a_candidate_and_stays_out_of_its_text() {
    // A copy of tiny-pow2 whose end-of-sequence id is the greedy path's third token.
    let reference = reference("tiny-pow2");
    let case = &reference.cases[0];
    let eos = case.greedy_new_ids[2];
    let dir = std::env::temp_dir().join(format!("storywriter-eos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-pow2").join(file), dir.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(fixture("tiny-pow2/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
    config["eos_token_id"] = eos.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let model = native::load(&dir, &Device::Cpu).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let params = SamplingParams {
        greedy: true,
        max_new_tokens: 24,
        ..SamplingParams::default()
    };
    let out = generate(
        &model.model,
        &model.tokenizer,
        &case.input_ids,
        &[CandidateSpec { params, seed: 0 }],
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let candidate = &out.candidates[0];
    assert_eq!(
        candidate.finish_reason,
        storywriter::generate::FinishReason::Eos
    );
    assert_eq!(
        candidate.ids,
        case.greedy_new_ids[..3],
        "stops right after the end-of-sequence token"
    );
    assert_eq!(
        candidate.text,
        model.tokenizer.decode(&case.greedy_new_ids[..2]).unwrap()
    );
}

#[test]
fn output_projection_type_is_chosen_per_file() {
    let written = |output: Option<GgmlDType>| {
        let types = TensorTypes {
            weights: GgmlDType::Q4_0,
            output,
        };
        let mut out = Cursor::new(Vec::new());
        native::with_opened(&fixture("tiny-pow2"), &Device::Cpu, |opened| {
            write_gguf(&mut out, opened, types, |_| {})
        })
        .unwrap();
        let bytes = out.into_inner();
        let content = Content::read(&mut Cursor::new(&bytes)).unwrap();
        let output = content
            .tensor_infos
            .get("output.weight")
            .map(|i| i.ggml_dtype);
        let embd = content.tensor_infos["token_embd.weight"].ggml_dtype;
        load_gguf(&bytes, "typed.gguf", &Device::Cpu).unwrap();
        (embd, output)
    };
    assert_eq!(
        written(Some(GgmlDType::Q6K)),
        (GgmlDType::Q4_0, Some(GgmlDType::Q6K))
    );
    assert_eq!(
        written(Some(GgmlDType::Q4K)),
        (GgmlDType::Q4_0, Some(GgmlDType::Q4K))
    );
    assert_eq!(
        written(None),
        (GgmlDType::Q4_0, None),
        "tied: no output tensor"
    );
    assert_eq!(
        written(Some(GgmlDType::Q4_0)),
        (GgmlDType::Q4_0, None),
        "same type: tied"
    );
    assert_eq!(
        TensorTypes::default_for(GgmlDType::Q4_0).output,
        Some(GgmlDType::Q4K)
    );
    assert_eq!(TensorTypes::default_for(GgmlDType::Q8_0).output, None);
}
