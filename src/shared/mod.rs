//! The vocabulary the engine and the data layer share: what a candidate was sampled with, why it
//! stopped, and which model made it. Nothing here depends on candle.

pub mod hidden_state;
pub mod portable_math;
mod sampling_params;
pub mod total_order;

use serde::{Deserialize, Serialize};

pub use hidden_state::HiddenState;
pub use sampling_params::SamplingParams;

/// Why a candidate stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// `max_new_tokens` were generated.
    Length,
    /// A sentence ended and the parameters asked to stop there.
    SentenceEnd,
    /// The caller stopped generation.
    Stopped,
}

/// A generated continuation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The new token ids (the end-of-sequence token included when it was produced).
    pub ids: Vec<u32>,
    /// Their text (without the end-of-sequence token).
    pub text: String,
    /// The model's log-probability of each new token (before any sampling warper).
    pub logprobs: Vec<f32>,
    /// The parameters it was sampled with.
    pub params: SamplingParams,
    /// Its RNG seed.
    pub seed: u64,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The mean of BLOOM's final hidden state (after `ln_f`) over the states that produced its
    /// tokens; empty when it has none. Serialized compactly, rounded to f16 ([`HiddenState`]).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "hidden_state::as_f16"
    )]
    pub hidden_mean: Vec<f32>,
}

/// What a model is, recorded with every candidate it generates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// File or directory name.
    pub name: String,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Storage type of the largest weight (`q4_0`, `f32`, …).
    pub quantization: String,
    /// SHA-256 over the file lengths and their first and last MiB (a fingerprint, not a checksum).
    pub content_hash: String,
}
