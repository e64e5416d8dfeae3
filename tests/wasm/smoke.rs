//! Smoke tests of the library compiled to wasm32 and run in headless Chromium and Firefox.
//!
//! Conventions for every module of `tests/wasm/` (see `main.rs`): tests are
//! `#[wasm_bindgen_test]`, not `#[test]` (plain `#[test]`s are silently skipped), and fixtures
//! are compiled in with `include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/…"))`
//! (keep them small: they are part of the .wasm the browser loads).

use std::str::FromStr;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use storywriter::config::BloomConfig;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_namespace = navigator, js_name = userAgent)]
    static USER_AGENT: String;
    #[wasm_bindgen(thread_local_v2, js_namespace = navigator, js_name = webdriver)]
    static WEBDRIVER: bool;
}

/// Deterministic, non-trivial values in [-1, 1] (no RNG needed).
fn wave(n: usize, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32) * 0.37 + phase).sin() * ((i as f32) * 0.11).cos())
        .collect()
}

/// Largest absolute difference divided by the largest absolute value of `expected`.
fn rel_err(got: &Tensor, expected: &Tensor) -> f32 {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

#[wasm_bindgen_test]
fn runs_in_a_browser_under_webdriver() {
    // scripts/test.sh runs this binary in headless Chromium (chromedriver) and in Firefox ESR
    // (geckodriver); Firefox's headless mode keeps its ordinary user agent.
    let agent = USER_AGENT.with(String::clone);
    console_log!("user agent: {agent}");
    assert!(
        agent.contains("HeadlessChrome/") || agent.contains("Firefox/"),
        "neither headless Chromium nor Firefox: {agent}"
    );
    assert!(
        WEBDRIVER.with(|d| *d),
        "navigator.webdriver is false: {agent}"
    );
}

#[wasm_bindgen_test]
fn built_with_simd128() {
    // Proves .cargo/config.toml's rustflags reached this build: candle's wasm kernels
    // (quantized dot products) are only compiled in with this target feature. Checked at
    // compile time, so a build without it does not even link.
    const {
        assert!(
            cfg!(target_feature = "simd128"),
            "built without +simd128: is RUSTFLAGS overriding .cargo/config.toml?"
        )
    };
}

#[wasm_bindgen_test]
fn config_parses_and_names_the_bad_field() {
    let good = r#"{"vocab_size": 250880, "n_embed": 1024, "n_layer": 24, "num_attention_heads": 16,
                   "layer_norm_epsilon": 1e-5, "bos_token_id": 1, "eos_token_id": 2}"#;
    let config = BloomConfig::from_json(good, "config.json").unwrap();
    assert_eq!(config, BloomConfig::bloom_560m());
    assert_eq!(config.head_dim(), 64);

    let missing = r#"{"vocab_size": 10, "n_layer": 2, "n_head": 2}"#;
    let err = BloomConfig::from_json(missing, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hidden_size"), "{err}");
    assert!(err.contains("config.json"), "{err}");

    let zero = r#"{"vocab_size": 0, "hidden_size": 8, "n_layer": 2, "n_head": 2}"#;
    let err = BloomConfig::from_json(zero, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("vocab_size"), "{err}");
}

#[wasm_bindgen_test]
fn f32_matmul_is_exact() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev).unwrap();
    let b = Tensor::new(&[[1f32, 0.], [0., 1.], [1., -1.]], &dev).unwrap();
    let c: Vec<Vec<f32>> = a.matmul(&b).unwrap().to_vec2().unwrap();
    assert_eq!(c, vec![vec![4., -1.], vec![10., -1.]]);

    // A larger one through gemm, checked against a naive loop.
    let (m, k, n) = (5, 96, 7);
    let x = wave(m * k, 0.3);
    let y = wave(k * n, 1.7);
    let got: Vec<Vec<f32>> = Tensor::from_slice(&x, (m, k), &dev)
        .unwrap()
        .matmul(&Tensor::from_slice(&y, (k, n), &dev).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|l| x[i * k + l] * y[l * n + j]).sum();
            assert!(
                (got[i][j] - want).abs() < 1e-4,
                "[{i}][{j}] {} vs {want}",
                got[i][j]
            );
        }
    }
}

#[wasm_bindgen_test]
fn quantized_matmul_matches_f32() {
    let dev = Device::Cpu;
    // Weights are (out, in) like a Linear layer; `in` must be a multiple of the block size (32).
    let (tokens, d_in, d_out) = (3, 128, 16);
    let w = Tensor::from_vec(wave(d_out * d_in, 0.0), (d_out, d_in), &dev).unwrap();
    let x = Tensor::from_vec(wave(tokens * d_in, 2.0), (tokens, d_in), &dev).unwrap();
    let exact = x.matmul(&w.t().unwrap()).unwrap();

    for (dtype, tol_vs_dequant, tol_vs_f32) in
        [(GgmlDType::Q4_0, 0.02, 0.15), (GgmlDType::Q8_0, 0.02, 0.03)]
    {
        let qw = QTensor::quantize(&w, dtype).unwrap();
        assert_eq!(qw.dtype(), dtype);
        let dequant = qw.dequantize(&dev).unwrap();
        let via_dequant = x.matmul(&dequant.t().unwrap()).unwrap();

        // QMatMul quantizes the activations to q8_0 and runs the simd128 vec_dot kernels.
        let mm = QMatMul::from_qtensor(qw).unwrap();
        assert!(
            matches!(mm, QMatMul::QTensor(_)),
            "{dtype:?} was dequantized"
        );
        let got = mm.forward(&x).unwrap();
        assert_eq!(got.dims(), &[tokens, d_out]);

        let e1 = rel_err(&got, &via_dequant);
        let e2 = rel_err(&got, &exact);
        assert!(
            e1 < tol_vs_dequant,
            "{dtype:?}: {e1} vs dequantized weights"
        );
        assert!(e2 < tol_vs_f32, "{dtype:?}: {e2} vs f32 weights");
        assert!(e2 > 0.0, "{dtype:?}: suspiciously exact");
    }
}

#[wasm_bindgen_test]
fn tokenizers_byte_level_bpe_runs() {
    // ByteLevel pre-tokenization uses a look-ahead regex: this runs fancy-regex in the browser.
    let json = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                        "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                  "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false,
                "vocab": {"h": 0, "i": 1, "Ġ": 2, "t": 3, "e": 4, "r": 5,
                          "hi": 6, "Ġt": 7, "er": 8},
                "merges": ["h i", "Ġ t", "e r"]}
    }"#;
    let tok = tokenizers::Tokenizer::from_str(json).unwrap();
    let enc = tok.encode("hi there", false).unwrap();
    assert_eq!(enc.get_ids(), &[6, 7, 0, 8, 4]);
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), "hi there");
}

#[wasm_bindgen_test]
fn getrandom_has_a_browser_backend() {
    // rand/ahash reach the browser's crypto.getRandomValues through getrandom's wasm_js backend.
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    getrandom::fill(&mut a).unwrap();
    getrandom::fill(&mut b).unwrap();
    assert_ne!(a, b);
}

/// A threaded worker that does not start is started once more, then gives way to one thread
/// (saying why), and the relaxed single-threaded build to the simd128 one; simd128 alone has
/// nothing left to fall back to.
#[wasm_bindgen_test]
fn a_threaded_start_that_fails_is_tried_again_then_falls_back_to_one_thread() {
    use storywriter::web::threads::ThreadPlan;

    let threaded = ThreadPlan {
        threads: 2,
        relaxed: true,
        note: None,
        retry: false,
    };
    let again = threaded.fallback("hung").expect("a second start");
    assert_eq!(
        again,
        ThreadPlan {
            retry: true,
            ..threaded
        }
    );
    let single = again.fallback("hung again").expect("one thread");
    assert_eq!(single.threads, 1);
    assert_eq!(
        single.note.as_deref(),
        Some("single-threaded: the threaded build did not start, twice: hung again")
    );
    let relaxed = ThreadPlan {
        relaxed: true,
        ..single
    };
    let plain = relaxed.fallback("no relaxed").expect("the simd128 build");
    assert!(!plain.relaxed && plain.threads == 1);
    assert!(plain.fallback("broken").is_none());
}
