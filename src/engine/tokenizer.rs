//! BLOOM's byte-level BPE tokenizer, from a `tokenizer.json` or from GGUF metadata.
//!
//! A GGUF file written by llama.cpp's converter (or by `storywriter quantize`) carries the
//! vocabulary and merges under `tokenizer.ggml.*` with the pre-tokenizer named `bloom`; we rebuild
//! the exact `tokenizer.json` pipeline of `bigscience/bloom-560m` around them, so one `.gguf`
//! file is a whole model.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Value as Json};

use crate::error::{Error, Result};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const CONTROL: i32 = 3;
    pub const UNUSED: i32 = 5;
}

/// BLOOM's pre-tokenizer split: runs of anything but whitespace and sentence punctuation, each
/// with its leading space.
const BLOOM_SPLIT_REGEX: &str = " ?[^(\\s|[.,!?…。，、।۔،])]+";

/// A tokenizer for BLOOM models.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({} tokens)", self.inner.get_vocab_size(true))
    }
}

/// Any JSON value, read to the end without being kept: every string decoded (serde's
/// `IgnoredAny` skips strings without checking their escapes, a lone surrogate for one).
struct ValidJson;

impl<'de> serde::Deserialize<'de> for ValidJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValidJson)
    }
}

impl<'de> serde::de::Visitor<'de> for ValidJson {
    type Value = ValidJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> std::result::Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self, A::Error> {
        while seq.next_element::<ValidJson>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self, A::Error> {
        while map.next_entry::<ValidJson, ValidJson>()?.is_some() {}
        Ok(self)
    }
}

fn tokenizer_error(origin: &str, e: impl std::fmt::Display) -> Error {
    Error::Format(format!("{origin}: invalid tokenizer: {e}"))
}

impl Tokenizer {
    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self> {
        // Checked first: `tokenizers` panics on some malformed JSON (inside `decoder`, for one).
        serde_json::from_slice::<ValidJson>(bytes)
            .map_err(|e| Error::Format(format!("{origin}: not valid JSON: {e}")))?;
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| tokenizer_error(origin, e))?;
        Ok(Self { inner })
    }

    /// Rebuilds the tokenizer from GGUF metadata (`tokenizer.ggml.tokens`, `…merges`,
    /// `…token_type`); `origin` names the file in errors.
    pub fn from_gguf(metadata: &HashMap<String, Value>, origin: &str) -> Result<Self> {
        let get = |key: &str| {
            metadata
                .get(key)
                .ok_or_else(|| Error::Format(format!("{origin}: GGUF metadata has no `{key}`")))
        };
        let strings = |key: &str| -> Result<Vec<String>> {
            get(key)?
                .to_vec()
                .and_then(|items| items.iter().map(|v| v.to_string().cloned()).collect())
                .map_err(|_| Error::Format(format!("{origin}: `{key}` is not a list of strings")))
        };
        let model = get("tokenizer.ggml.model")?.to_string().map_err(|_| {
            Error::Format(format!("{origin}: `tokenizer.ggml.model` is not a string"))
        })?;
        if model != "gpt2" {
            return Err(Error::Format(format!(
                "{origin}: tokenizer.ggml.model is `{model}`, BLOOM needs a `gpt2` (byte-level BPE) vocabulary"
            )));
        }
        if let Some(Value::String(pre)) = metadata.get("tokenizer.ggml.pre") {
            if pre != "bloom" {
                return Err(Error::Format(format!(
                    "{origin}: tokenizer.ggml.pre is `{pre}`, only BLOOM's pre-tokenizer (`bloom`) is supported"
                )));
            }
        }
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .and_then(|items| items.iter().map(|v| v.to_i32()).collect())
                .map_err(|_| {
                    Error::Format(format!(
                        "{origin}: `tokenizer.ggml.token_type` is not a list of i32"
                    ))
                })?,
            None => vec![token_type::NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::Format(format!(
                "{origin}: `tokenizer.ggml.token_type` has {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        Self::bloom_bpe(&tokens, &types, merges, origin)
    }

    /// Builds bloom-560m's `tokenizer.json` pipeline around a vocabulary (tokens in id order
    /// with their llama.cpp token types) and BPE merges (`"a b"`).
    fn bloom_bpe(
        tokens: &[String],
        types: &[i32],
        merges: Vec<String>,
        origin: &str,
    ) -> Result<Self> {
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, (token, kind)) in tokens.iter().zip(types).enumerate() {
            match *kind {
                token_type::UNUSED => continue,
                token_type::CONTROL => added.push(json!({
                    "id": id, "content": token, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true
                })),
                _ => {}
            }
            vocab.insert(token.clone(), json!(id));
        }
        let json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": BLOOM_SPLIT_REGEX},
                     "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                     "use_regex": false}
                ]
            },
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
                               "trim_offsets": false, "use_regex": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                        "use_regex": false},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        });
        Self::from_json(json.to_string().as_bytes(), origin)
    }

    /// A small byte-level tokenizer for models with random weights, which have no trained
    /// vocabulary: `<unk>`, `<s>`, `</s>`, `<pad>`, the 256 bytes, then 32 merges of
    /// common English pairs (llama.cpp refuses a BPE vocabulary without merges).
    pub fn byte_level() -> Result<Self> {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<pad>"].map(String::from).to_vec();
        let mut types = vec![token_type::CONTROL; tokens.len()];
        tokens.extend(byte_level_alphabet());
        let mut merges = Vec::with_capacity(DEMO_MERGES.len());
        for (left, right) in DEMO_MERGES {
            merges.push(format!("{left} {right}"));
            tokens.push(format!("{left}{right}"));
        }
        types.resize(tokens.len(), token_type::NORMAL);
        Self::bloom_bpe(&tokens, &types, merges, "byte-level tokenizer")
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| tokenizer_error("tokenizer", e))
    }

    /// The `tokenizer.ggml.*` metadata llama.cpp's converter writes for this vocabulary, padded
    /// with unused `[PAD{id}]` tokens up to `vocab_size` (the embedding table's row count).
    pub fn gguf_metadata(&self, vocab_size: usize) -> Result<Vec<(String, Value)>> {
        let json: Json = serde_json::from_str(
            &self
                .inner
                .to_string(false)
                .map_err(|e| tokenizer_error("tokenizer", e))?,
        )
        .map_err(|e| tokenizer_error("tokenizer", e))?;
        let model = &json["model"];
        let by_id: HashMap<u32, String> = self
            .inner
            .get_vocab(true)
            .into_iter()
            .map(|(t, i)| (i, t))
            .collect();
        let special: Vec<u32> = json["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["special"].as_bool() == Some(true))
            .filter_map(|t| t["id"].as_u64().map(|i| i as u32))
            .collect();
        let max_id = self.max_token_id() as usize;
        if max_id >= vocab_size {
            return Err(Error::Format(format!(
                "tokenizer id {max_id} is beyond the embedding table ({vocab_size} rows)"
            )));
        }
        let mut tokens = Vec::with_capacity(vocab_size);
        let mut types = Vec::with_capacity(vocab_size);
        for id in 0..vocab_size as u32 {
            let (token, kind) = match by_id.get(&id) {
                Some(t) if special.contains(&id) => (t.clone(), token_type::CONTROL),
                Some(t) => (t.clone(), token_type::NORMAL),
                None => (format!("[PAD{id}]"), token_type::UNUSED),
            };
            tokens.push(Value::String(token));
            types.push(Value::I32(kind));
        }
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| tokenizer_error("tokenizer", "the BPE model has no merges"))?
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(Value::String(s.clone())),
                Json::Array(pair) if pair.len() == 2 => Ok(Value::String(format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                ))),
                other => Err(tokenizer_error(
                    "tokenizer",
                    format!("unexpected merge {other}"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        if merges.is_empty() {
            // An empty GGUF array carries no element type a reader can trust (candle writes
            // u32), and llama.cpp rejects a `gpt2` vocabulary whose merges are not strings.
            return Err(tokenizer_error(
                "tokenizer",
                "the BPE model has no merges; llama.cpp cannot load such a vocabulary",
            ));
        }
        let id_of = |token: &str| self.inner.token_to_id(token);
        let mut metadata = vec![
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("gpt2".into()),
            ),
            (
                "tokenizer.ggml.pre".to_string(),
                Value::String("bloom".into()),
            ),
            ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens)),
            ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
            ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
        ];
        for (key, token) in [
            ("tokenizer.ggml.bos_token_id", "<s>"),
            ("tokenizer.ggml.eos_token_id", "</s>"),
            ("tokenizer.ggml.unknown_token_id", "<unk>"),
            ("tokenizer.ggml.padding_token_id", "<pad>"),
        ] {
            if let Some(id) = id_of(token) {
                metadata.push((key.to_string(), Value::U32(id)));
            }
        }
        Ok(metadata)
    }

    /// Token ids of `text`, without special tokens added (BLOOM adds none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("cannot tokenize text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; bytes of an incomplete UTF-8 character come out as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Invalid(format!("cannot decode token ids: {e}")))
    }

    /// The largest id the tokenizer can produce.
    pub fn max_token_id(&self) -> u32 {
        self.inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The id of a token such as `</s>`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// The merges of [`Tokenizer::byte_level`], by rank: common English pieces, each made of two
/// tokens that exist before it, whole words before inner pairs (`Ġ` is GPT-2's byte-level space).
#[rustfmt::skip]
const DEMO_MERGES: [(&str, &str); 32] = [
    ("Ġ", "t"), ("Ġ", "a"), ("Ġ", "s"), ("Ġ", "w"), ("Ġ", "o"), ("Ġ", "i"), ("Ġ", "h"), ("Ġ", "b"),
    ("Ġ", "c"), ("Ġt", "h"), ("Ġth", "e"), ("Ġa", "n"), ("Ġan", "d"), ("Ġt", "o"), ("Ġo", "f"),
    ("Ġi", "n"), ("Ġi", "t"), ("Ġw", "a"), ("Ġwa", "s"), ("Ġh", "e"), ("Ġh", "i"), ("Ġhi", "s"),
    ("Ġs", "h"), ("Ġsh", "e"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("r", "e"),
    ("o", "n"), ("e", "d"), ("in", "g"),
];

/// The 256 characters GPT-2's byte-level BPE uses for the bytes 0..=255, in byte order.
fn byte_level_alphabet() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shifted = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(c).expect("valid code point").to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tokenizer_merges_and_round_trips() {
        let tokenizer = Tokenizer::byte_level().unwrap();
        let ids = tokenizer.encode(" the cat and she was in it").unwrap();
        assert_eq!(ids[0], tokenizer.token_id("Ġthe").unwrap(), "merges apply");
        assert_eq!(
            tokenizer.decode(&ids).unwrap(),
            " the cat and she was in it"
        );
        assert_eq!(
            tokenizer.max_token_id() as usize,
            4 + 256 + DEMO_MERGES.len() - 1
        );
        let metadata = tokenizer.gguf_metadata(384).unwrap();
        let merges = metadata
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.merges")
            .unwrap();
        let Value::Array(merges) = &merges.1 else {
            panic!("merges are not an array")
        };
        assert_eq!(merges.len(), DEMO_MERGES.len());
        assert!(merges.iter().all(|m| matches!(m, Value::String(_))));
    }

    /// Found by fuzzing: malformed JSON inside `decoder` (a syntax error, a lone surrogate)
    /// made `tokenizers` panic.
    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for text in [
            br#"{"decoder": {&"type": "ByteLevel"}, "model": {}}"#.as_slice(),
            br#"{"decoder": {"type": "\ud800"}, "model": {}}"#,
        ] {
            match Tokenizer::from_json(text, "t.json") {
                Err(e) => assert!(e.to_string().starts_with("t.json: not valid JSON: "), "{e}"),
                Ok(_) => panic!("malformed JSON was accepted"),
            }
        }
    }
}
