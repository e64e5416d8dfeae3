//! TEMPORARY stub (greedy only) until the real sampling module lands.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Sampling parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub greedy: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
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
    pub fn validate(&self) -> Result<()> {
        Ok(())
    }
}
pub struct Sampler {
    params: SamplingParams,
}
impl Sampler {
    pub fn new(params: SamplingParams, _seed: u64) -> Result<Self> {
        Ok(Self { params })
    }
    pub fn sample(&mut self, logits: &[f32], _context: &[u32]) -> Result<u32> {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        if logits.is_empty() {
            return Err(Error::Invalid("empty".into()));
        }
        Ok(best as u32)
    }
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }
}
pub fn log_prob(logits: &[f32], id: u32) -> f32 {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = logits.iter().map(|l| (l - m).exp()).sum();
    logits[id as usize] - m - s.ln()
}
pub fn ends_sentence(text: &str) -> bool {
    text.ends_with('.')
}
