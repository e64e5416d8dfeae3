//! Bad model files: truncated, wrong magic, tensors past the end, absurd dimensions, missing or
//! misshapen tensors, broken metadata, configs and tokenizers. Every one must give an error that
//! names the file and the problem, and none may panic.
//!
//! A valid tiny model is built in the test (random weights, byte-level tokenizer), written as a
//! Hugging Face directory and as a GGUF file, then corrupted in every way listed above.

use std::collections::HashMap;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use storywriter::config::BloomConfig;
use storywriter::gguf::format;
use storywriter::loader::{self, LoadedModel, TensorStore};
use storywriter::tokenizer::Tokenizer;

mod gguf_headers;
mod gguf_tensors;
mod hf;

// ---------------------------------------------------------------------------------------------
// The valid model
// ---------------------------------------------------------------------------------------------

/// `tiny(384)` made narrower so that every case stays fast in a debug build.
fn config() -> BloomConfig {
    BloomConfig {
        hidden_size: 32,
        ..BloomConfig::tiny(384)
    }
}

struct Fixture {
    tensors: HashMap<String, Tensor>,
    config_json: String,
    tokenizer_json: String,
    gguf: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = config();
        let tensors = storywriter::init::random_checkpoint(&config, 7).unwrap();
        let config_json = storywriter::init::hf_config_json(&config);
        let tokenizer_json = Tokenizer::byte_level().unwrap().to_json().unwrap();
        let opened = loader::open_hf(
            &config_json,
            tokenizer_json.as_bytes(),
            TensorStore::Loaded(tensors.clone()),
            "tiny",
            "hash".into(),
            &Device::Cpu,
        )
        .unwrap();
        let mut out = Cursor::new(Vec::new());
        storywriter::gguf::write_gguf(
            &mut out,
            opened,
            storywriter::gguf::TensorTypes::default_for(GgmlDType::Q8_0),
            |_| {},
        )
        .unwrap();
        Fixture {
            tensors,
            config_json,
            tokenizer_json,
            gguf: out.into_inner(),
        }
    })
}

fn load_gguf(bytes: &[u8]) -> storywriter::Result<LoadedModel> {
    loader::load_gguf(bytes, "x.gguf", &Device::Cpu)
}

// ---------------------------------------------------------------------------------------------
// Checking cases: every failure is collected, a panic is a failure with the case's name
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Cases {
    run: usize,
    failures: Vec<String>,
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "<non-string panic>".into())
}

impl Cases {
    /// Runs `f`, which must fail with an error mentioning every one of `needles`
    /// (case-insensitively).
    fn err<T>(&mut self, case: &str, needles: &[&str], f: impl FnOnce() -> storywriter::Result<T>) {
        self.run += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(panic) => self
                .failures
                .push(format!("{case}: PANICKED: {}", panic_message(panic))),
            Ok(Ok(_)) => self
                .failures
                .push(format!("{case}: succeeded, expected an error")),
            Ok(Err(e)) => {
                let message = e.to_string();
                println!("{case}: {message}");
                let lower = message.to_lowercase();
                let missing: Vec<&str> = needles
                    .iter()
                    .copied()
                    .filter(|n| !lower.contains(&n.to_lowercase()))
                    .collect();
                if !missing.is_empty() {
                    self.failures.push(format!(
                        "{case}: error {message:?} does not mention {missing:?}"
                    ));
                }
            }
        }
    }

    /// Runs `f`, which must succeed.
    fn ok<T>(&mut self, case: &str, f: impl FnOnce() -> storywriter::Result<T>) -> Option<T> {
        self.run += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(panic) => self
                .failures
                .push(format!("{case}: PANICKED: {}", panic_message(panic))),
            Ok(Err(e)) => self.failures.push(format!("{case}: failed: {e}")),
            Ok(Ok(v)) => return Some(v),
        }
        None
    }

    /// Runs `f`, which may succeed or fail but must not panic.
    fn no_panic<T>(&mut self, case: &str, f: impl FnOnce() -> storywriter::Result<T>) {
        self.run += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(panic) => self
                .failures
                .push(format!("{case}: PANICKED: {}", panic_message(panic))),
            Ok(Err(e)) => println!("{case}: {e}"),
            Ok(Ok(_)) => println!("{case}: loaded"),
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n  {}",
            self.failures.len(),
            self.run,
            self.failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "storywriter-bad-files-{}-{label}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// A GGUF writer that can write anything, valid or not
// ---------------------------------------------------------------------------------------------

/// A little-endian byte writer for hand-made headers.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }

    /// A GGUF v3 header start: magic, version, tensor count, metadata count.
    fn header(tensors: u64, kvs: u64) -> Self {
        let mut b = Self::default();
        b.raw(b"GGUF").u32(3).u64(tensors).u64(kvs);
        b
    }

    fn value(&mut self, v: &Value) -> &mut Self {
        format::push_value(&mut self.0, "test value", v).expect("a writable value");
        self
    }

    fn kv(&mut self, key: &str, v: &Value) -> &mut Self {
        self.str(key).u32(format::value_type_id(v)).value(v)
    }
}

#[derive(Clone)]
struct TensorEntry {
    name: String,
    /// GGUF order: innermost dimension first.
    dims: Vec<u64>,
    dtype: u32,
    offset: u64,
}

/// A GGUF file taken apart, to be changed and written back byte for byte.
#[derive(Clone)]
struct Gguf {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorEntry>,
    data: Vec<u8>,
}

impl Gguf {
    fn parse(bytes: &[u8]) -> Self {
        let content = Content::read(&mut Cursor::new(bytes)).unwrap();
        let mut metadata: Vec<(String, Value)> = content.metadata.into_iter().collect();
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tensors: Vec<TensorEntry> = content
            .tensor_infos
            .into_iter()
            .map(|(name, info)| TensorEntry {
                name,
                dims: info.shape.dims().iter().rev().map(|&d| d as u64).collect(),
                dtype: format::ggml_type_id(info.ggml_dtype),
                offset: info.offset,
            })
            .collect();
        tensors.sort_by_key(|t| t.offset);
        let data = bytes[content.tensor_data_offset as usize..].to_vec();
        Self {
            metadata,
            tensors,
            data,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Bytes::header(self.tensors.len() as u64, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            b.kv(key, value);
        }
        for t in &self.tensors {
            b.str(&t.name).u32(t.dims.len() as u32);
            for &d in &t.dims {
                b.u64(d);
            }
            b.u32(t.dtype).u64(t.offset);
        }
        while !b.0.len().is_multiple_of(32) {
            b.0.push(0);
        }
        b.raw(&self.data);
        b.0
    }

    fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.remove(key);
        self.metadata.push((key.to_string(), value));
        self
    }

    fn remove(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    fn get(&self, key: &str) -> &Value {
        &self.metadata.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn tensor(&mut self, name: &str) -> &mut TensorEntry {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap()
    }

    fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.name != name);
        self
    }
}

/// The valid GGUF with `change` applied.
fn changed(change: impl FnOnce(&mut Gguf)) -> Vec<u8> {
    let mut gguf = Gguf::parse(&fixture().gguf);
    change(&mut gguf);
    gguf.to_bytes()
}
