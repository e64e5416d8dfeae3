//! The tokens the model found most likely at a position of a text: what it could have written
//! instead of the token it drew there.
//!
//! The probabilities are the softmax of the raw logits (no repetition penalty, temperature,
//! top-k or top-p), the distribution the records' log-probabilities come from, so the
//! alternative that is the recorded token shows the probability stored for it.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::engine::generate::CachePool;
use crate::engine::model::Bloom;
use crate::engine::sampling::top_log_probs;
use crate::engine::tokenizer::Tokenizer;
use crate::error::{Error, Result};

/// A token the model could write at a position, with its probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// The token id.
    pub id: u32,
    /// Its text (bytes of a character split across tokens come out as U+FFFD).
    pub text: String,
    /// The model's probability of it there, before any sampling setting.
    pub prob: f32,
}

/// The `k` most likely next tokens after `ids` (their last `context_length` tokens), most
/// likely first. Runs only the ids after the longest prefix a cache held in `pool` has
/// (leaving the pool as it was).
pub fn top_alternatives(
    model: &Bloom,
    tokenizer: &Tokenizer,
    pool: &CachePool,
    ids: &[u32],
    k: usize,
) -> Result<Vec<Alternative>> {
    if ids.is_empty() {
        return Err(Error::Invalid(
            "no tokens before the position: give at least one".into(),
        ));
    }
    let window = &ids[ids.len().saturating_sub(model.config().context_length)..];
    let mut cache = pool.prefix_cache(model, window);
    let fresh = &window[cache.len()..];
    let input = Tensor::new(fresh, model.device())?.unsqueeze(0)?;
    let logits: Vec<f32> = model
        .forward(&input, &mut cache, &[fresh.len() - 1])?
        .flatten_all()?
        .to_vec1()?;
    top_log_probs(&logits, k)
        .into_iter()
        .map(|(id, logprob)| {
            Ok(Alternative {
                id,
                text: tokenizer.decode(&[id])?,
                prob: logprob.exp(),
            })
        })
        .collect()
}
