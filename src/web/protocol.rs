//! Messages between the page and the model worker.
//!
//! Both directions travel as structured JavaScript objects ([`to_js`], [`from_js`]:
//! `serde-wasm-bindgen`, the shapes JSON would have). Natively, the unit tests and the fuzz
//! target check the same serde types through JSON ([`to_json`], [`from_json`]). A request may
//! carry one JavaScript value beside it (the `File` of a [`ModelSource::File`]); see
//! `web::worker_client`.

use serde::{Deserialize, Serialize};

use crate::data::dataset::check_record;
use crate::data::records::CandidateRecord;
use crate::data::story::TokenPrefix;
use crate::engine::alternatives::Alternative;
use crate::engine::generate::{CandidateSpec, Generation};
use crate::picker::Picker;
use crate::shared::ModelIdentity;

/// Where the worker gets a model from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelSource {
    /// A GGUF file at a URL (relative URLs are resolved against the page). A cached copy under
    /// `name` with `bytes` bytes (when known) is used instead of downloading it again.
    Url {
        /// Where to fetch it.
        url: String,
        /// The name it is cached under in the Origin Private File System.
        name: String,
        /// Whether it is a demo model with random weights.
        demo: bool,
        /// Its size, when the page knows it (from `models/index.json`).
        bytes: Option<u64>,
    },
    /// A GGUF file already in the Origin Private File System cache.
    Cached {
        /// Its name in the cache.
        name: String,
    },
    /// A local file the writer picked or dropped; the `File` travels beside the request.
    File {
        /// The file's name.
        name: String,
    },
    /// A BLOOM repository on the Hugging Face hub (safetensors + tokenizer.json), quantized in
    /// the worker and cached as `{repo name}-{dtype}.gguf`.
    Hub {
        /// The hub's address, `https://huggingface.co` (or a local stand-in).
        base_url: String,
        /// The repository, e.g. `bigscience/bloom-560m`.
        repo: String,
        /// `q4_0` or `q8_0`.
        dtype: String,
    },
}

impl ModelSource {
    /// The name the model is (or will be) cached under.
    pub fn cache_name(&self) -> String {
        match self {
            ModelSource::Url { name, .. }
            | ModelSource::Cached { name }
            | ModelSource::File { name } => name.clone(),
            ModelSource::Hub { repo, dtype, .. } => {
                format!("{}-{dtype}.gguf", repo.rsplit('/').next().unwrap_or(repo))
            }
        }
    }
}

/// A request from the page to the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// Load a model (replacing any loaded one), reporting [`Event::Progress`] then
    /// [`Event::Ready`] or [`Event::Error`].
    LoadModel {
        /// Where from.
        source: ModelSource,
    },
    /// Generate one round of candidates continuing `text`, streaming [`Event::Token`]s, then
    /// [`Event::RoundDone`].
    Generate {
        /// The page's number for this round (echoed in the events).
        round: u64,
        /// The story text to continue.
        text: String,
        /// The token ids the records hold for the text's beginning (continued exactly).
        #[serde(default)]
        known: Option<TokenPrefix>,
        /// One spec per candidate.
        candidates: Vec<CandidateSpec>,
    },
    /// Stop round `round` at its next decode step; it ends with [`Event::RoundDone`], its
    /// unfinished candidates `stopped` (the model and its caches stay loaded).
    Stop {
        /// The page's number of the round.
        round: u64,
    },
    /// List the cached models ([`Event::Cached`]).
    ListCached,
    /// Delete a cached model, then list the rest ([`Event::Cached`]).
    DeleteCached {
        /// Its name in the cache.
        name: String,
    },
    /// The text of each of a record's generated ids, answered by [`Event::Pieces`] (nothing
    /// while no model is loaded or a round runs).
    Decode {
        /// The record they belong to (echoed).
        record_id: String,
        /// The ids.
        ids: Vec<u32>,
    },
    /// The model's most likely tokens at position `index` of a record's output, answered by
    /// [`Event::Alternatives`] (or an [`Event::Error`] of [`Failed::Alternatives`]).
    Alternatives {
        /// The record (echoed).
        record_id: String,
        /// The position in its output (echoed).
        index: usize,
        /// The ids before that position: the record's input ids and its first `index` output
        /// ids.
        ids: Vec<u32>,
        /// How many tokens to give, 1 to [`MAX_ALTERNATIVES`].
        top: usize,
    },
    /// Train a picker on these records (the writer's own), reporting
    /// [`Event::PickerProgress`] then [`Event::PickerTrained`] or [`Event::Error`].
    TrainPicker {
        /// Every record of the writer's stories.
        records: Vec<CandidateRecord>,
    },
}

/// What a [`Event::Progress`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Downloading the model file.
    Download,
    /// Reading it from the cache or a local file.
    Read,
    /// Writing it to the cache.
    Store,
    /// Building the model from the file.
    Build,
    /// Downloading and quantizing hub weights, tensor by tensor.
    Quantize,
}

/// What a failure interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failed {
    /// Loading a model.
    Load,
    /// Generating a round.
    Generate,
    /// Listing or deleting cached models.
    Cache,
    /// Training a picker.
    Picker,
    /// Finding a token's alternatives.
    Alternatives,
}

/// A cached model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedModel {
    /// Its name in the cache.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A message from the worker to the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// The worker is running and takes requests (messages sent before are lost, so the page
    /// holds them until this arrives).
    Started,
    /// Loading progress.
    Progress {
        /// What is being done.
        phase: Phase,
        /// Bytes done so far.
        bytes: u64,
        /// Total bytes, when known.
        total: Option<u64>,
    },
    /// A model is loaded and ready to generate.
    Ready {
        /// The model's identity (recorded with every candidate).
        identity: ModelIdentity,
        /// The file (or cache) name it came from.
        name: String,
        /// Whether it is a demo model with random weights.
        demo: bool,
        /// Whether it came from the cache.
        from_cache: bool,
        /// Its vocabulary size (the parameter table clamps top_k to it).
        vocab_size: usize,
        /// Its context length in tokens (the window the story is read through).
        context_length: usize,
        /// The worker's WebAssembly memory after loading, in bytes (it never shrinks).
        wasm_memory_bytes: u64,
    },
    /// A token of a candidate, as it is generated.
    Token {
        /// The round it belongs to.
        round: u64,
        /// The candidate's index (0-based).
        candidate: usize,
        /// Text completed by the token (may be empty).
        text: String,
    },
    /// A round is complete.
    RoundDone {
        /// The round.
        round: u64,
        /// The ids fed to the model (the story's last tokens).
        input_ids: Vec<u32>,
        /// The candidates and timings.
        generation: Generation,
        /// The worker's WebAssembly memory after the round, in bytes.
        wasm_memory_bytes: u64,
    },
    /// The text of each id of a [`Request::Decode`] (bytes of a character split across ids
    /// come out as U+FFFD).
    Pieces {
        /// The record asked about.
        record_id: String,
        /// One text per id.
        pieces: Vec<String>,
    },
    /// The most likely tokens at a position of a record's output, most likely first (a
    /// [`Request::Alternatives`] answered).
    Alternatives {
        /// The record asked about.
        record_id: String,
        /// The position asked about.
        index: usize,
        /// The tokens, with their probabilities before any sampling setting.
        alternatives: Vec<Alternative>,
    },
    /// The cached models.
    Cached {
        /// Name and size of each.
        models: Vec<CachedModel>,
    },
    /// How far picker training is.
    PickerProgress {
        /// Share done, 0 to 1.
        done: f64,
    },
    /// A picker is trained (its card holds the held-out evaluation).
    PickerTrained {
        /// The picker.
        picker: Box<Picker>,
    },
    /// Something failed; `message` is the library's (or the browser's) error.
    Error {
        /// What failed.
        failed: Failed,
        /// The error message.
        message: String,
    },
}

/// The most alternatives a [`Request::Alternatives`] may ask for.
pub const MAX_ALTERNATIVES: usize = 50;

/// A message as a plain JavaScript object for `postMessage` (maps as objects, 64-bit integers
/// as numbers: every one the library writes stays below 2^53). The JavaScript package's values
/// (`src/bin/pkg/`) cross the same way.
#[cfg(target_arch = "wasm32")]
pub fn to_js<T: Serialize>(message: &T) -> wasm_bindgen::JsValue {
    message
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("protocol messages always serialize")
}

/// Reads a message received through `postMessage`; the error says what was wrong.
#[cfg(target_arch = "wasm32")]
pub fn from_js<T: for<'de> Deserialize<'de>>(value: wasm_bindgen::JsValue) -> crate::Result<T> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| crate::Error::Format(format!("worker message: {e}")))
}

/// A message as JSON text (the unit tests' and the fuzz target's encoding of messages).
pub fn to_json<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}

/// Parses a message from JSON text; the error says what was wrong.
pub fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> crate::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| crate::Error::Format(format!("worker message: {e}: {text:.200}")))
}

impl Request {
    /// The checks serde cannot make: the candidates of [`Request::Generate`] must have valid
    /// parameters, [`Request::Alternatives`] must give ids and a count in range, and the records of [`Request::TrainPicker`] must pass [`check_record`] (a
    /// number beyond f32's range parses as infinite, for one).
    pub fn check(&self) -> crate::Result<()> {
        let bad = |what: String| crate::Error::Format(format!("worker message: {what}"));
        match self {
            Request::Generate { candidates, .. } => {
                for (index, spec) in candidates.iter().enumerate() {
                    spec.params
                        .validate()
                        .map_err(|e| bad(format!("candidates[{index}].params: {e}")))?;
                }
            }
            Request::Alternatives { ids, top, .. } => {
                if ids.is_empty() {
                    return Err(bad("ids: no tokens before the position".into()));
                }
                if !(1..=MAX_ALTERNATIVES).contains(top) {
                    return Err(bad(format!("top: {top} is not 1 to {MAX_ALTERNATIVES}")));
                }
            }
            Request::TrainPicker { records } => {
                for (index, record) in records.iter().enumerate() {
                    check_record(record).map_err(|e| bad(format!("records[{index}]: {e}")))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What fails when this request does.
    pub fn failed(&self) -> Failed {
        match self {
            Request::LoadModel { .. } => Failed::Load,
            // Failures of these show as a notice only.
            Request::ListCached | Request::DeleteCached { .. } | Request::Decode { .. } => {
                Failed::Cache
            }
            Request::TrainPicker { .. } => Failed::Picker,
            Request::Alternatives { .. } => Failed::Alternatives,
            Request::Generate { .. } | Request::Stop { .. } => Failed::Generate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::generate::{Candidate, FinishReason, GenerationStats};
    use crate::engine::profile::SpanTotal;
    use crate::shared::SamplingParams;

    fn round_trip<T>(message: T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let text = to_json(&message);
        let back: T = from_json(&text).unwrap();
        assert_eq!(back, message, "{text}");
    }

    #[test]
    fn requests_round_trip() {
        round_trip(Request::LoadModel {
            source: ModelSource::Url {
                url: "models/demo.gguf".into(),
                name: "demo.gguf".into(),
                demo: true,
                bytes: Some(123),
            },
        });
        round_trip(Request::LoadModel {
            source: ModelSource::Cached { name: "a".into() },
        });
        round_trip(Request::LoadModel {
            source: ModelSource::File { name: "b".into() },
        });
        round_trip(Request::Decode {
            record_id: "r".into(),
            ids: vec![5, 6],
        });
        round_trip(Event::Pieces {
            record_id: "r".into(),
            pieces: vec![" a".into(), "\u{fffd}".into()],
        });
        round_trip(Request::Generate {
            round: 7,
            text: "Once <b>upon</b>".into(),
            known: Some(TokenPrefix {
                text_len: 4,
                ids: vec![7, 9],
            }),
            candidates: vec![CandidateSpec {
                params: SamplingParams::default(),
                seed: (1 << 53) - 1,
            }],
        });
        round_trip(Request::LoadModel {
            source: ModelSource::Hub {
                base_url: "http://127.0.0.1:1".into(),
                repo: "bigscience/bloom-560m".into(),
                dtype: "q4_0".into(),
            },
        });
        round_trip(Request::ListCached);
        round_trip(Request::Alternatives {
            record_id: "r".into(),
            index: 2,
            ids: vec![5, 6, 7],
            top: 5,
        });
        round_trip(Request::Stop { round: 3 });
        round_trip(Request::DeleteCached { name: "x".into() });
    }

    #[test]
    fn events_round_trip() {
        round_trip(Event::Started);
        round_trip(Event::Progress {
            phase: Phase::Download,
            bytes: 10,
            total: None,
        });
        round_trip(Event::Ready {
            identity: ModelIdentity {
                name: "m".into(),
                format: "gguf".into(),
                quantization: "q8_0".into(),
                content_hash: "ab".into(),
            },
            name: "m.gguf".into(),
            demo: false,
            from_cache: true,
            vocab_size: 250_880,
            context_length: 2048,
            wasm_memory_bytes: 4 << 30,
        });
        round_trip(Event::Token {
            round: 1,
            candidate: 2,
            text: "é".into(),
        });
        round_trip(Event::RoundDone {
            round: 1,
            input_ids: vec![1, 2],
            generation: Generation {
                candidates: vec![Candidate {
                    ids: vec![3],
                    text: "x".into(),
                    logprobs: vec![-0.5],
                    params: SamplingParams::default(),
                    seed: 4,
                    finish_reason: FinishReason::Length,
                    hidden_mean: vec![],
                }],
                stats: GenerationStats {
                    prompt_tokens: 32,
                    reused_tokens: 400,
                    prefill_s: 0.25,
                    generated_tokens: 96,
                    decode_steps: 31,
                    decode_s: 7.5,
                    spans: vec![SpanTotal {
                        name: "matmul".into(),
                        calls: 3,
                        seconds: 0.5,
                    }],
                },
            },
            wasm_memory_bytes: 1 << 20,
        });
        round_trip(Event::Cached {
            models: vec![CachedModel {
                name: "m".into(),
                bytes: 5,
            }],
        });
        round_trip(Event::Alternatives {
            record_id: "r".into(),
            index: 0,
            alternatives: vec![Alternative {
                id: 7,
                text: "<b>".into(),
                prob: 0.25,
            }],
        });
        round_trip(Event::Error {
            failed: Failed::Load,
            message: "bad".into(),
        });
    }

    #[test]
    fn cache_names() {
        let hub = ModelSource::Hub {
            base_url: "https://huggingface.co".into(),
            repo: "bigscience/bloom-560m".into(),
            dtype: "q8_0".into(),
        };
        assert_eq!(hub.cache_name(), "bloom-560m-q8_0.gguf");
        assert_eq!(
            ModelSource::Cached {
                name: "a.gguf".into()
            }
            .cache_name(),
            "a.gguf"
        );
    }

    #[test]
    fn worker_loader_start_failure_parses() {
        // www/worker_loader.js builds this message (an object) by hand when the worker's wasm
        // cannot start.
        let event: Event =
            from_json(r#"{"type":"error","failed":"load","message":"no wasm"}"#).unwrap();
        assert_eq!(
            event,
            Event::Error {
                failed: Failed::Load,
                message: "no wasm".into()
            }
        );
    }

    #[test]
    fn tags_are_kebab_case() {
        assert_eq!(to_json(&Request::ListCached), r#"{"type":"list-cached"}"#);
        let bad = from_json::<Request>(r#"{"type":"launch"}"#).unwrap_err();
        assert!(bad.to_string().contains("worker message"), "{bad}");
    }

    /// Found by fuzzing: a log-probability beyond f32's range parsed as -inf, and the request
    /// did not survive its own JSON (infinity is written as null).
    #[test]
    fn numbers_beyond_f32_are_refused_by_the_checks() {
        let text =
            include_str!("../../tests/fixtures/fuzz/worker_message-overflowing-logprob.json");
        let request: Request = from_json(text).unwrap();
        assert_eq!(request.failed(), Failed::Picker);
        let error = request.check().unwrap_err().to_string();
        assert!(
            error.contains("records[0]: field `logprobs[10]`: must be finite"),
            "{error}"
        );
        let hot = r#"{"type":"generate","round":1,"text":"a","candidates":[{"seed":1,
            "params":{"greedy":false,"temperature":1e99,"top_k":0,"top_p":1,"min_p":0,
            "typical_p":1,"repetition_penalty":1,"max_new_tokens":4,"stop_at_sentence_end":false}}]}"#;
        let error = from_json::<Request>(hot).unwrap().check().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("candidates[0].params: temperature"),
            "{error}"
        );
    }

    #[test]
    fn alternatives_need_ids_and_a_count_in_range() {
        let ask = |ids: Vec<u32>, top| Request::Alternatives {
            record_id: "r".into(),
            index: 0,
            ids,
            top,
        };
        assert!(ask(vec![1], 5).check().is_ok());
        assert_eq!(ask(vec![1], 5).failed(), Failed::Alternatives);
        let error = ask(vec![], 5).check().unwrap_err().to_string();
        assert!(error.contains("ids: no tokens"), "{error}");
        for top in [0, MAX_ALTERNATIVES + 1] {
            let error = ask(vec![1], top).check().unwrap_err().to_string();
            assert!(
                error.contains(&format!("top: {top} is not 1 to 50")),
                "{error}"
            );
        }
    }
}
