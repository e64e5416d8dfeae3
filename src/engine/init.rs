//! Models with seeded random weights, for tests, benchmarks and the offline demo (no model
//! hub is reachable where this runs).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::config::BloomConfig;
use crate::engine::gguf::tensor_layout;
use crate::error::Result;

/// Standard deviation of the random weights (transformers' `initializer_range` for BLOOM).
const INIT_STD: f32 = 0.02;

/// Named shapes `init-random --config` accepts.
pub fn named_config(name: &str) -> Option<BloomConfig> {
    match name {
        "bloom-560m" => Some(BloomConfig::bloom_560m()),
        // 256 byte tokens and 4 special ones, rounded up as BLOOM rounds its vocabulary.
        "tiny" => Some(BloomConfig::tiny(384)),
        _ => None,
    }
}

/// A Hugging Face-style checkpoint (`transformer.`-prefixed names, per-head interleaved QKV)
/// with weights uniform in ±√3·0.02 (std 0.02), layer norms at weight 1 and bias 0, and zero
/// biases, drawn from ChaCha8 seeded with `seed` (identical on every platform).
pub fn random_checkpoint(config: &BloomConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bound = INIT_STD * 3f32.sqrt();
    let mut tensors = HashMap::new();
    for (name, shape) in tensor_layout(config) {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; len]
        } else if shape.len() == 1 {
            vec![1.0; len]
        } else {
            (0..len).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let mut tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
        if name.contains(".attn_qkv.") {
            // Stored the way transformers stores it; the loader turns it back.
            tensor = qkv_contiguous_to_hf(&tensor, config.n_head)?;
        }
        tensors.insert(
            format!(
                "transformer.{}",
                crate::engine::loader::hf_name(&name).expect("known name")
            ),
            tensor,
        );
    }
    Ok(tensors)
}

/// Inverse of [`crate::engine::loader::qkv_hf_to_contiguous`]: contiguous Q|K|V rows to HF's per-head interleave.
fn qkv_contiguous_to_hf(t: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let head_dim = dims[0] / (3 * n_head);
    let mut split = vec![3, n_head, head_dim];
    split.extend_from_slice(&dims[1..]);
    Ok(t.reshape(split)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape(dims)?)
}

/// `config.json` for `config`, in transformers' spelling.
pub fn hf_config_json(config: &BloomConfig) -> String {
    serde_json::json!({
        "architectures": ["BloomForCausalLM"],
        "model_type": "bloom",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "apply_residual_connection_post_layernorm": config.apply_residual_connection_post_layernorm,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "seq_length": config.context_length,
        "initializer_range": INIT_STD,
        "tie_word_embeddings": true,
    })
    .to_string()
}
