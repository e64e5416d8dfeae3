//! BLOOM hyper-parameters, read from a Hugging Face `config.json` or GGUF metadata.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of a BLOOM model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BloomConfig {
    /// Number of rows of the embedding table (and of the tied lm_head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Number of attention heads.
    pub n_head: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_epsilon: f64,
    /// When true the residual is taken after the layer norm instead of before it.
    pub apply_residual_connection_post_layernorm: bool,
    /// Id of the beginning-of-sequence token.
    pub bos_token_id: u32,
    /// Id of the end-of-sequence token.
    pub eos_token_id: u32,
    /// Context length the model was trained with; the KV cache slides beyond it.
    pub context_length: usize,
}

/// `config.json` as written by transformers, with every spelling BLOOM configs have used.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: Option<usize>,
    n_embed: Option<usize>,
    n_layer: Option<usize>,
    num_hidden_layers: Option<usize>,
    n_head: Option<usize>,
    num_attention_heads: Option<usize>,
    layer_norm_epsilon: Option<f64>,
    apply_residual_connection_post_layernorm: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    seq_length: Option<usize>,
}

/// Dimensions beyond these are taken as a corrupt file rather than a model.
const MAX_DIM: usize = 1 << 20;

impl BloomConfig {
    /// Parses a Hugging Face `config.json` (both the `hidden_size`/`n_layer`/`n_head` and the
    /// older `n_embed`/`num_attention_heads` spellings) and validates it.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::Format(format!("{origin}: invalid BLOOM config: {e}")))?;
        let missing = |field: &str| Error::Format(format!("{origin}: missing field `{field}`"));
        // transformers lets `n_embed` override `hidden_size`.
        let defaults = Self::bloom_560m();
        let config = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf
                .n_embed
                .or(hf.hidden_size)
                .ok_or_else(|| missing("hidden_size"))?,
            n_layer: hf
                .n_layer
                .or(hf.num_hidden_layers)
                .ok_or_else(|| missing("n_layer"))?,
            n_head: hf
                .n_head
                .or(hf.num_attention_heads)
                .ok_or_else(|| missing("n_head"))?,
            layer_norm_epsilon: hf.layer_norm_epsilon.unwrap_or(defaults.layer_norm_epsilon),
            apply_residual_connection_post_layernorm: hf
                .apply_residual_connection_post_layernorm
                .unwrap_or(false),
            bos_token_id: hf.bos_token_id.unwrap_or(defaults.bos_token_id),
            eos_token_id: hf.eos_token_id.unwrap_or(defaults.eos_token_id),
            context_length: hf.seq_length.unwrap_or(defaults.context_length),
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_head
    }

    /// Checks that the dimensions are positive, consistent and not absurd.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let fields = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("context_length", self.context_length),
        ];
        for (name, value) in fields {
            if value == 0 || value > MAX_DIM {
                return Err(Error::Format(format!(
                    "{origin}: {name} = {value} is not a plausible model dimension (1..={MAX_DIM})"
                )));
            }
        }
        if !self.hidden_size.is_multiple_of(self.n_head) {
            return Err(Error::Format(format!(
                "{origin}: hidden_size {} is not divisible by n_head {}",
                self.hidden_size, self.n_head
            )));
        }
        if !(self.layer_norm_epsilon > 0.0 && self.layer_norm_epsilon < 1.0) {
            return Err(Error::Format(format!(
                "{origin}: layer_norm_epsilon {} is outside (0, 1)",
                self.layer_norm_epsilon
            )));
        }
        Ok(())
    }

    /// The shape of `bigscience/bloom-560m`.
    pub fn bloom_560m() -> Self {
        Self {
            vocab_size: 250_880,
            hidden_size: 1024,
            n_layer: 24,
            n_head: 16,
            layer_norm_epsilon: 1e-5,
            apply_residual_connection_post_layernorm: false,
            bos_token_id: 1,
            eos_token_id: 2,
            context_length: 2048,
        }
    }

    /// A tiny shape for tests: two layers, four heads, k-quant friendly width.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 256,
            n_layer: 2,
            n_head: 4,
            ..Self::bloom_560m()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings() {
        let new = r#"{"vocab_size": 10, "hidden_size": 8, "n_layer": 2, "n_head": 2}"#;
        let old =
            r#"{"vocab_size": 10, "n_embed": 8, "num_hidden_layers": 2, "num_attention_heads": 2}"#;
        let a = BloomConfig::from_json(new, "new").unwrap();
        let b = BloomConfig::from_json(old, "old").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.head_dim(), 4);
    }

    #[test]
    fn rejects_absurd_dimensions() {
        let bad = r#"{"vocab_size": 10, "hidden_size": 9, "n_layer": 2, "n_head": 2}"#;
        let err = BloomConfig::from_json(bad, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not divisible"), "{err}");
        let huge = r#"{"vocab_size": 10000000000, "hidden_size": 8, "n_layer": 2, "n_head": 2}"#;
        let err = BloomConfig::from_json(huge, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocab_size"), "{err}");
    }
}
