//! The sampling parameters of one candidate, as generation reads them and records keep them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sampling parameters of one candidate.
///
/// [`Default`] gives the Hugging Face defaults with `do_sample=True`: temperature 1.0, top-k 50,
/// top-p 1.0, min-p off, typical-p 1.0, no repetition penalty, 64 new tokens. Missing fields in
/// serialized form take these defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Greedy decoding (`do_sample=False`): argmax after the repetition penalty; the warpers
    /// (temperature, top-k, top-p, min-p, typical-p) are ignored, as in HF.
    pub greedy: bool,
    /// Divides the scores; > 0 (may be 0 only when `greedy`).
    pub temperature: f32,
    /// Keep the `top_k` highest scores (and every score tied with the k-th); 0 = off.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of most likely tokens with mass ≥ `top_p`;
    /// in (0, 1], 1 = off.
    pub top_p: f32,
    /// Remove tokens whose probability is below `min_p` × the top probability; in [0, 1], 0 = off.
    pub min_p: f32,
    /// Typical sampling mass; in (0, 1], 1 = off.
    pub typical_p: f32,
    /// Repetition penalty on every id already in the context (prompt included); > 0, 1 = off.
    pub repetition_penalty: f32,
    /// Upper bound on the number of generated tokens.
    pub max_new_tokens: usize,
    /// Stop the candidate once its text ends a sentence (see [`ends_sentence`]).
    pub stop_at_sentence_end: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            greedy: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: 0.0,
            typical_p: 1.0,
            repetition_penalty: 1.0,
            max_new_tokens: 64,
            stop_at_sentence_end: false,
        }
    }
}

impl SamplingParams {
    /// Checks every parameter, naming the first bad field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("typical_p", self.typical_p),
            ("repetition_penalty", self.repetition_penalty),
        ];
        for (name, value) in finite {
            if !value.is_finite() {
                return Err(invalid(format!(
                    "{name} must be a finite number, got {value}"
                )));
            }
        }
        if self.greedy {
            if self.temperature < 0.0 {
                return Err(invalid(format!(
                    "temperature must be >= 0 (it is ignored with greedy decoding), got {}",
                    self.temperature
                )));
            }
        } else if self.temperature <= 0.0 {
            return Err(invalid(format!(
                "temperature must be > 0 when sampling (use greedy for argmax), got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(invalid(format!(
                "min_p must be in [0, 1], got {}",
                self.min_p
            )));
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return Err(invalid(format!(
                "typical_p must be in (0, 1], got {}",
                self.typical_p
            )));
        }
        if self.repetition_penalty <= 0.0 {
            return Err(invalid(format!(
                "repetition_penalty must be > 0 (1 = off), got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> Error {
    Error::Invalid(message)
}
