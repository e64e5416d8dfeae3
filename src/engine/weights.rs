//! What the loaders hand the model: a model file opened and checked ([`OpenedModel`]), a model
//! ready to run ([`LoadedModel`]), a Hugging Face checkpoint's named tensors ([`TensorStore`]),
//! and the checks and fingerprints both file formats share.

use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::engine::config::BloomConfig;
use crate::engine::model::{Bloom, WeightSource};
use crate::engine::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::shared::ModelIdentity;

/// A model ready to run, with its tokenizer and identity.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network.
    pub model: Bloom,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// What it is.
    pub identity: ModelIdentity,
}

/// How much of each end of a file [`ModelIdentity::content_hash`] covers.
const FINGERPRINT_EDGE: usize = 1 << 20;

#[cfg(any(test, not(target_arch = "wasm32")))]
pub(crate) fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(&part[..part.len().min(FINGERPRINT_EDGE)]);
        hasher.update(&part[part.len().saturating_sub(FINGERPRINT_EDGE)..]);
    }
    hex(&hasher.finalize())
}

/// [`fingerprint`] of one file of `len` bytes read through `reader` (only its two ends are read).
pub(crate) fn reader_fingerprint<R: Read + Seek>(
    reader: &mut R,
    len: u64,
) -> std::io::Result<String> {
    let edge = len.min(FINGERPRINT_EDGE as u64);
    let mut head = vec![0; edge as usize];
    reader.seek(SeekFrom::Start(0))?;
    reader.read_exact(&mut head)?;
    let mut tail = vec![0; edge as usize];
    reader.seek(SeekFrom::Start(len - edge))?;
    reader.read_exact(&mut tail)?;
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    hasher.update(&head);
    hasher.update(&tail);
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn check_tokenizer(
    tokenizer: &Tokenizer,
    config: &BloomConfig,
    origin: &str,
) -> Result<()> {
    let max = tokenizer.max_token_id();
    if max as usize >= config.vocab_size {
        return Err(Error::Format(format!(
            "{origin}: the tokenizer has token id {max}, beyond the embedding table ({} rows)",
            config.vocab_size
        )));
    }
    for (field, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
    ] {
        if id as usize >= config.vocab_size {
            return Err(Error::Format(format!(
                "{origin}: {field} {id} is beyond the embedding table ({} rows)",
                config.vocab_size
            )));
        }
    }
    Ok(())
}

/// A candle error without the backtrace candle attaches when `RUST_BACKTRACE` is set.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

pub(crate) fn check_shape(
    origin: &str,
    name: &str,
    got: &[usize],
    expected: &[usize],
) -> Result<()> {
    if got != expected {
        return Err(Error::Format(format!(
            "{origin}: tensor `{name}` has shape {got:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

/// A model file opened and checked, its tensors not read yet.
pub struct OpenedModel<'a> {
    /// The model's shape.
    pub config: BloomConfig,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its tensors, by llama.cpp name.
    pub source: Box<dyn WeightSource + 'a>,
    /// What it is.
    pub identity: ModelIdentity,
}

impl OpenedModel<'_> {
    /// Reads every tensor and builds the network.
    pub fn build(mut self, device: &Device) -> Result<LoadedModel> {
        let model = Bloom::load(&self.config, self.source.as_mut(), device)?;
        Ok(LoadedModel {
            model,
            tokenizer: self.tokenizer,
            identity: self.identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn loader_reader_fingerprint_matches_the_in_memory_one() {
        for len in [0, 10, FINGERPRINT_EDGE + 3, 2 * FINGERPRINT_EDGE + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let streamed = reader_fingerprint(&mut Cursor::new(&bytes), len as u64).unwrap();
            assert_eq!(streamed, fingerprint(&[&bytes]), "{len} bytes");
        }
    }
}
