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

// ---------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_gguf_loads() {
    let mut cases = Cases::default();
    let bytes = &fixture().gguf;
    cases.ok("valid gguf", || load_gguf(bytes));
    cases.ok("valid gguf, rewritten by the test's writer", || {
        load_gguf(&changed(|_| {}))
    });
    let dir = TempDir::new("valid-gguf");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    if let Some(model) = cases.ok("valid gguf from a file", || {
        loader::native::load(&path, &Device::Cpu)
    }) {
        let ids = Tensor::new(&[[5u32, 6, 7]], &Device::Cpu).unwrap();
        let mut cache = model.model.new_cache();
        cases.ok("forward on the valid gguf", || {
            model.model.forward(&ids, &mut cache, &[2])
        });
    }
    cases.finish();
}

#[test]
fn truncated_gguf() {
    let mut cases = Cases::default();
    let bytes = &fixture().gguf;
    let data_start = bytes.len() - Gguf::parse(bytes).data.len();
    let mut cuts: Vec<usize> = (0..16).map(|k| bytes.len() * k / 16).collect();
    // Every 1/8 of the header (metadata and tensor infos), inside the magic, the version and the
    // counts, just before and just after the start of the tensor data.
    cuts.extend((1..8).map(|k| data_start * k / 8));
    cuts.extend([
        2,
        6,
        12,
        20,
        data_start - 1,
        data_start,
        data_start + 1,
        bytes.len() - 1,
    ]);
    for cut in cuts {
        let part = &bytes[..cut];
        cases.err(
            &format!("gguf truncated to {cut} of {} bytes", bytes.len()),
            &["x.gguf", "truncated"],
            || load_gguf(part),
        );
    }
    // Through a file too.
    let dir = TempDir::new("truncated-gguf");
    for cut in [0, 3, bytes.len() / 3] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        cases.err(
            &format!("gguf file truncated to {cut} bytes"),
            &[&format!("cut{cut}.gguf"), "truncated"],
            || loader::native::load(&path, &Device::Cpu),
        );
    }
    cases.finish();
}

#[test]
fn wrong_magic_and_version() {
    let mut cases = Cases::default();
    let mut bytes = fixture().gguf.clone();
    bytes[0] = b'X';
    cases.err("wrong magic", &["x.gguf", "magic"], || load_gguf(&bytes));
    let dir = TempDir::new("magic");
    let path = dir.path().join("notgguf.bin");
    std::fs::write(&path, &bytes).unwrap();
    cases.err(
        "wrong magic, from a file",
        &["notgguf.bin", "magic"],
        || loader::native::load(&path, &Device::Cpu),
    );
    let mut bytes = fixture().gguf.clone();
    bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
    cases.err("unknown version", &["x.gguf", "version"], || {
        load_gguf(&bytes)
    });
    cases.finish();
}

#[test]
fn hand_made_gguf_headers() {
    let mut cases = Cases::default();
    let huge = 1u64 << 40;
    let mut pad = Bytes::default();
    pad.raw(&[0; 64]);
    let pad = pad.0;

    let b = Bytes::header(huge, 0).raw(&pad).0.clone();
    cases.err("2^40 tensors", &["x.gguf", "tensor"], || load_gguf(&b));
    let b = Bytes::header(0, huge).raw(&pad).0.clone();
    cases.err("2^40 metadata entries", &["x.gguf", "metadata"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(1 << 20, 1 << 20).raw(&pad).0.clone();
    cases.err(
        "2^20 tensors and entries in a tiny file",
        &["x.gguf", "tensors"],
        || load_gguf(&b),
    );

    let b = Bytes::header(0, 1)
        .u64(1000)
        .raw(b"general.")
        .raw(&pad)
        .0
        .clone();
    cases.err("key length past the end", &["x.gguf", "string"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(huge)
        .raw(&pad)
        .0
        .clone();
    cases.err("string value of 2^40 bytes", &["x.gguf", "string"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(u64::MAX)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "string value of 2^64-1 bytes",
        &["x.gguf", "string"],
        || load_gguf(&b),
    );
    let b = Bytes::header(0, 1)
        .str("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(huge)
        .raw(&pad)
        .0
        .clone();
    cases.err("array of 2^40 strings", &["x.gguf", "array"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(0, 1)
        .str("general.name")
        .u32(99)
        .raw(&pad)
        .0
        .clone();
    cases.err("unknown value type", &["x.gguf", "type"], || load_gguf(&b));
    let b = Bytes::header(0, 1)
        .str("general.flag")
        .u32(7)
        .raw(&[7])
        .raw(&pad)
        .0
        .clone();
    cases.err("bool that is neither 0 nor 1", &["x.gguf", "bool"], || {
        load_gguf(&b)
    });
    let mut nested = Bytes::header(0, 1);
    nested.str("general.deep").u32(9);
    for _ in 0..100 {
        nested.u32(9).u64(1);
    }
    nested.u32(4).u64(0).raw(&pad);
    cases.err("arrays nested 100 deep", &["x.gguf", "depth"], || {
        load_gguf(&nested.0)
    });

    // Tensor infos.
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(5)
        .raw(&[0; 40])
        .u32(0)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "tensor with 5 dimensions",
        &["x.gguf", "token_embd.weight", "dimensions"],
        || load_gguf(&b),
    );
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(2)
        .u64(64)
        .u64(384)
        .u32(99)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err("tensor of unknown type", &["x.gguf", "dtype"], || {
        load_gguf(&b)
    });
    let b = Bytes::header(1, 0)
        .str("token_embd.weight")
        .u32(2)
        .u64(huge)
        .u64(huge)
        .u32(8)
        .u64(0)
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "2^40 × 2^40 tensor, alone",
        &["x.gguf", "token_embd.weight"],
        || load_gguf(&b),
    );

    // A zero alignment: candle's reader divides by it.
    let b = Bytes::header(0, 1)
        .kv("general.alignment", &Value::U32(0))
        .raw(&pad)
        .0
        .clone();
    cases.err(
        "alignment 0, no tensors",
        &["x.gguf", "general.alignment"],
        || load_gguf(&b),
    );
    cases.finish();
}

#[test]
fn bad_gguf_tensors() {
    let mut cases = Cases::default();
    let huge = 1u64 << 40;

    let b = changed(|g| g.tensor("token_embd.weight").dims = vec![huge, huge]);
    cases.err(
        "token_embd 2^40 × 2^40",
        &["x.gguf", "token_embd.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims = vec![huge, huge]);
    cases.err(
        "ffn_up 2^40 × 2^40",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims = vec![1 << 20; 4]);
    cases.err(
        "ffn_up 4 × 2^20 dims",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.1.ffn_down.weight").dims = vec![1 << 20, 1 << 20]);
    cases.err(
        "ffn_down 2^20 × 2^20 (a terabyte)",
        &["x.gguf", "blk.1.ffn_down.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.tensors.push(TensorEntry {
            name: "extra.weight".into(),
            dims: vec![huge, huge],
            dtype: 0,
            offset: 0,
        })
    });
    cases.err(
        "unused tensor 2^40 × 2^40",
        &["x.gguf", "extra.weight"],
        || load_gguf(&b),
    );

    let b = changed(|g| g.tensor("blk.0.attn_qkv.weight").offset = 1 << 62);
    cases.err(
        "tensor offset 2^62",
        &["x.gguf", "blk.0.attn_qkv.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.0.attn_qkv.weight").offset = u64::MAX);
    cases.err(
        "tensor offset 2^64-1",
        &["x.gguf", "blk.0.attn_qkv.weight", "end of the file"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        let len = g.data.len() as u64;
        g.tensor("output_norm.weight").offset = len - 8;
    });
    cases.err(
        "tensor running past the end",
        &["x.gguf", "output_norm.weight", "end of the file"],
        || load_gguf(&b),
    );

    let b =
        changed(|g| g.tensor("blk.0.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::F32));
    cases.err(
        "q8_0 tensor declared f32",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.1.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::Q8_1));
    cases.err(
        "tensor of an unloadable type (q8_1)",
        &["x.gguf", "blk.1.ffn_up.weight", "q8_1"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("output_norm.weight").dtype = format::ggml_type_id(GgmlDType::Q8K));
    cases.err(
        "tensor of an unloadable type (q8k)",
        &["x.gguf", "output_norm.weight", "q8k"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.attn_norm.bias").dtype = format::ggml_type_id(GgmlDType::Q4K));
    cases.err(
        "32 values in 256-value blocks",
        &["x.gguf", "blk.0.attn_norm.bias", "block"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.ffn_up.weight").dtype = format::ggml_type_id(GgmlDType::Q4K));
    cases.err(
        "rows of 32 values in 256-value blocks",
        &["x.gguf", "blk.0.ffn_up.weight"],
        || load_gguf(&b),
    );
    let b =
        changed(|g| g.tensor("blk.0.attn_norm.bias").dtype = format::ggml_type_id(GgmlDType::F16));
    cases.no_panic("f32 bias declared f16 (fits: garbage but loadable)", || {
        load_gguf(&b)
    });

    let b = changed(|g| g.tensor("blk.0.ffn_up.weight").dims.reverse());
    cases.err(
        "ffn_up transposed",
        &["x.gguf", "blk.0.ffn_up.weight", "[32, 128]", "[128, 32]"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("blk.1.attn_output.weight").dims = vec![32]);
    cases.err(
        "attn_output 1-D",
        &["x.gguf", "blk.1.attn_output.weight", "[32]", "[32, 32]"],
        || load_gguf(&b),
    );

    let b = changed(|g| {
        g.remove_tensor("blk.1.ffn_down.weight");
    });
    cases.err(
        "missing ffn_down",
        &["x.gguf", "blk.1.ffn_down.weight", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove_tensor("token_embd.weight");
    });
    cases.err(
        "missing token_embd",
        &["x.gguf", "token_embd.weight", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove_tensor("output_norm.bias");
    });
    cases.err(
        "missing output_norm.bias",
        &["x.gguf", "output_norm.bias", "missing"],
        || load_gguf(&b),
    );
    cases.finish();
}

#[test]
fn bad_gguf_metadata() {
    let mut cases = Cases::default();
    let s = |v: &str| Value::String(v.into());

    let b = changed(|g| {
        g.set("general.architecture", s("llama"));
    });
    cases.err(
        "architecture llama",
        &["x.gguf", "general.architecture", "llama", "bloom"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove("general.architecture");
    });
    cases.err(
        "no architecture",
        &["x.gguf", "general.architecture"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("general.architecture", Value::U32(7));
    });
    cases.err(
        "architecture not a string",
        &["x.gguf", "general.architecture"],
        || load_gguf(&b),
    );

    for align in [Value::U32(0), Value::U8(0), Value::I32(0), Value::U32(3)] {
        let b = changed(|g| {
            g.set("general.alignment", align.clone());
        });
        cases.err(
            &format!("alignment {align:?}"),
            &["x.gguf", "general.alignment"],
            || load_gguf(&b),
        );
    }

    let b = changed(|g| {
        g.remove("bloom.block_count");
    });
    cases.err("no block_count", &["x.gguf", "bloom.block_count"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("bloom.block_count", Value::U64(1 << 40));
    });
    cases.err("block_count 2^40", &["x.gguf", "n_layer"], || load_gguf(&b));
    let b = changed(|g| {
        g.set("bloom.block_count", s("two"));
    });
    cases.err(
        "block_count a string",
        &["x.gguf", "bloom.block_count"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.block_count", Value::U32(3));
    });
    cases.err(
        "block_count beyond the tensors",
        &["x.gguf", "blk.2.", "missing"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.embedding_length", Value::U32(64));
    });
    cases.err(
        "wrong embedding_length",
        &["x.gguf", "embedding_length"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.embedding_length", Value::U32(64))
            .set("bloom.feed_forward_length", Value::U32(256));
    });
    cases.err(
        "wrong embedding_length and ffn",
        &["x.gguf", "token_embd.weight", "[384, 32]", "[384, 64]"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.attention.head_count", Value::U32(5));
    });
    cases.err(
        "head_count not dividing the width",
        &["x.gguf", "n_head"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("bloom.attention.layer_norm_epsilon", Value::F32(f32::NAN));
    });
    cases.err("epsilon NaN", &["x.gguf", "layer_norm_epsilon"], || {
        load_gguf(&b)
    });

    // Tokenizer metadata.
    let b = changed(|g| {
        g.remove("tokenizer.ggml.tokens");
    });
    cases.err("no tokens", &["x.gguf", "tokenizer.ggml.tokens"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::U32(1); 384]),
        );
    });
    cases.err(
        "tokens not strings",
        &["x.gguf", "tokenizer.ggml.tokens", "string"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.tokens", s("abc"));
    });
    cases.err(
        "tokens not an array",
        &["x.gguf", "tokenizer.ggml.tokens"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.remove("tokenizer.ggml.merges");
    });
    cases.err("no merges", &["x.gguf", "tokenizer.ggml.merges"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("tokenizer.ggml.merges", Value::Array(vec![s("zz qq")]));
    });
    cases.err("merge of unknown tokens", &["x.gguf", "tokenizer"], || {
        load_gguf(&b)
    });
    let b = changed(|g| {
        g.set("tokenizer.ggml.model", s("llama"));
    });
    cases.err(
        "tokenizer model llama",
        &["x.gguf", "tokenizer.ggml.model", "llama"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.model", Value::U32(3));
    });
    cases.err(
        "tokenizer model not a string",
        &["x.gguf", "tokenizer.ggml.model"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.pre", s("gpt-2"));
    });
    cases.err(
        "pre-tokenizer gpt-2",
        &["x.gguf", "tokenizer.ggml.pre", "gpt-2"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1); 10]),
        );
    });
    cases.err(
        "10 token types",
        &["x.gguf", "tokenizer.ggml.token_type", "10"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set(
            "tokenizer.ggml.token_type",
            Value::Array(vec![s("normal"); 384]),
        );
    });
    cases.err(
        "token types not integers",
        &["x.gguf", "tokenizer.ggml.token_type"],
        || load_gguf(&b),
    );

    // Token ids beyond the embedding table.
    let b = changed(|g| {
        let mut tokens = g.get("tokenizer.ggml.tokens").to_vec().unwrap().clone();
        let mut types = g.get("tokenizer.ggml.token_type").to_vec().unwrap().clone();
        for i in tokens.len()..500 {
            tokens.push(Value::String(format!("extra{i}")));
            types.push(Value::I32(1));
        }
        g.set("tokenizer.ggml.tokens", Value::Array(tokens))
            .set("tokenizer.ggml.token_type", Value::Array(types));
    });
    cases.err(
        "500 tokens for 384 rows",
        &["x.gguf", "499", "beyond the embedding", "384"],
        || load_gguf(&b),
    );
    let b = changed(|g| g.tensor("token_embd.weight").dims = vec![32, 200]);
    cases.err(
        "embedding of 200 rows for 384 tokens",
        &["x.gguf", "beyond the embedding", "200"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.eos_token_id", Value::U32(100_000));
    });
    cases.err(
        "eos id beyond the embedding",
        &["x.gguf", "eos", "100000", "384"],
        || load_gguf(&b),
    );
    let b = changed(|g| {
        g.set("tokenizer.ggml.bos_token_id", Value::U32(384));
    });
    cases.err(
        "bos id beyond the embedding",
        &["x.gguf", "bos", "384"],
        || load_gguf(&b),
    );

    // Odd but not necessarily wrong: must not panic.
    let b = changed(|g| {
        let mut tokens = g.get("tokenizer.ggml.tokens").to_vec().unwrap().clone();
        tokens[1] = s("");
        tokens[5] = s("!");
        g.set("tokenizer.ggml.tokens", Value::Array(tokens));
    });
    cases.no_panic("empty control token and a duplicate token", || {
        let model = load_gguf(&b)?;
        let ids = model.tokenizer.encode("Hello, world!")?;
        model.tokenizer.decode(&ids)
    });
    cases.finish();
}

// ---------------------------------------------------------------------------------------------
// Hugging Face directories
// ---------------------------------------------------------------------------------------------

/// Writes a Hugging Face directory: `config.json`, `tokenizer.json`, `model.safetensors`.
fn hf_dir(
    label: &str,
    config_json: &str,
    tokenizer_json: &str,
    tensors: &HashMap<String, Tensor>,
) -> TempDir {
    let dir = TempDir::new(label);
    std::fs::write(dir.path().join("config.json"), config_json).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer_json).unwrap();
    candle_core::safetensors::save(tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn valid_hf_dir(label: &str) -> TempDir {
    let f = fixture();
    hf_dir(label, &f.config_json, &f.tokenizer_json, &f.tensors)
}

fn load_dir(dir: &TempDir) -> storywriter::Result<LoadedModel> {
    loader::native::load(dir.path(), &Device::Cpu)
}

/// The fixture's tensors with `change` applied.
fn tensors_with(change: impl FnOnce(&mut HashMap<String, Tensor>)) -> HashMap<String, Tensor> {
    let mut tensors = fixture().tensors.clone();
    change(&mut tensors);
    tensors
}

/// The fixture's `config.json` with `change` applied to its JSON object.
fn config_with(change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut json: serde_json::Value = serde_json::from_str(&fixture().config_json).unwrap();
    change(json.as_object_mut().unwrap());
    json.to_string()
}

#[test]
fn valid_hf_dirs_load() {
    let mut cases = Cases::default();
    let dir = valid_hf_dir("valid");
    cases.ok("valid directory", || load_dir(&dir));
    let unprefixed = tensors_with(|t| {
        *t = t
            .drain()
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
    });
    let f = fixture();
    let dir = hf_dir("unprefixed", &f.config_json, &f.tokenizer_json, &unprefixed);
    cases.ok("valid directory without the transformer. prefix", || {
        load_dir(&dir)
    });
    cases.finish();
}

#[test]
fn bad_hf_config_and_tokenizer() {
    let mut cases = Cases::default();
    let f = fixture();

    let dir = valid_hf_dir("no-config");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    cases.err("no config.json", &["config.json"], || load_dir(&dir));
    let dir = valid_hf_dir("no-tokenizer");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    cases.err("no tokenizer.json", &["tokenizer.json"], || load_dir(&dir));

    let bad_configs: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "config not JSON",
            "{\"vocab_size\": 384,".into(),
            vec!["config.json"],
        ),
        ("config an array", "[1, 2]".into(), vec!["config.json"]),
        (
            "config not UTF-8",
            String::new(),
            vec!["config.json", "utf-8"],
        ),
        (
            "vocab_size a string",
            config_with(|c| {
                c.insert("vocab_size".into(), "many".into());
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "vocab_size negative",
            config_with(|c| {
                c.insert("vocab_size".into(), (-1).into());
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "vocab_size missing",
            config_with(|c| {
                c.remove("vocab_size");
            }),
            vec!["config.json", "vocab_size"],
        ),
        (
            "hidden_size missing",
            config_with(|c| {
                c.remove("hidden_size");
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "hidden_size 2^40",
            config_with(|c| {
                c.insert("hidden_size".into(), (1u64 << 40).into());
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "hidden_size a float",
            config_with(|c| {
                c.insert("hidden_size".into(), 32.5.into());
            }),
            vec!["config.json", "hidden_size"],
        ),
        (
            "n_head zero",
            config_with(|c| {
                c.insert("n_head".into(), 0.into());
            }),
            vec!["config.json", "n_head"],
        ),
        (
            "n_layer an array",
            config_with(|c| {
                c.insert("n_layer".into(), serde_json::json!([2]));
            }),
            vec!["config.json", "n_layer"],
        ),
        (
            "epsilon a string",
            config_with(|c| {
                c.insert("layer_norm_epsilon".into(), "tiny".into());
            }),
            vec!["config.json", "layer_norm_epsilon"],
        ),
        (
            "eos_token_id 2^40",
            config_with(|c| {
                c.insert("eos_token_id".into(), (1u64 << 40).into());
            }),
            vec!["config.json", "eos_token_id"],
        ),
        (
            "residual flag a number",
            config_with(|c| {
                c.insert("apply_residual_connection_post_layernorm".into(), 1.into());
            }),
            vec!["config.json", "apply_residual_connection_post_layernorm"],
        ),
    ];
    for (case, config, needles) in bad_configs {
        let dir = hf_dir("config", &config, &f.tokenizer_json, &f.tensors);
        if case == "config not UTF-8" {
            std::fs::write(dir.path().join("config.json"), b"{\"vocab_size\": \xff}").unwrap();
        }
        cases.err(case, &needles, || load_dir(&dir));
    }

    for (case, tokenizer) in [
        ("tokenizer not JSON", "{\"model\": "),
        ("tokenizer empty", ""),
        (
            "tokenizer JSON of the wrong shape",
            "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}",
        ),
    ] {
        let dir = hf_dir("tokenizer", &f.config_json, tokenizer, &f.tensors);
        cases.err(case, &["tokenizer.json"], || load_dir(&dir));
    }

    // Ids beyond the embedding: a smaller vocab_size, or an added token far out.
    let config = config_with(|c| {
        c.insert("vocab_size".into(), 200.into());
    });
    let dir = hf_dir("small-vocab", &config, &f.tokenizer_json, &f.tensors);
    let max_id = Tokenizer::byte_level().unwrap().max_token_id().to_string();
    cases.err(
        "tokenizer of 292 ids for 200 rows",
        &["beyond the embedding", &max_id, "200"],
        || load_dir(&dir),
    );
    // (tokenizers takes an added token's id from the model's vocabulary, so it goes there too.)
    let mut tokenizer: serde_json::Value = serde_json::from_str(&f.tokenizer_json).unwrap();
    tokenizer["model"]["vocab"]["<far>"] = 5000.into();
    tokenizer["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 5000, "content": "<far>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    let dir = hf_dir(
        "far-token",
        &f.config_json,
        &tokenizer.to_string(),
        &f.tensors,
    );
    cases.err(
        "added token id 5000",
        &["beyond the embedding", "5000", "384"],
        || load_dir(&dir),
    );
    let config = config_with(|c| {
        c.insert("eos_token_id".into(), 384.into());
    });
    let dir = hf_dir("far-eos", &config, &f.tokenizer_json, &f.tensors);
    cases.err("eos_token_id beyond the embedding", &["eos", "384"], || {
        load_dir(&dir)
    });
    cases.finish();
}

#[test]
fn bad_hf_tensors() {
    let mut cases = Cases::default();
    let f = fixture();

    let tensors = tensors_with(|t| {
        t.remove("transformer.h.1.mlp.dense_4h_to_h.weight");
    });
    let dir = hf_dir("missing", &f.config_json, &f.tokenizer_json, &tensors);
    cases.err(
        "missing dense_4h_to_h",
        &["h.1.mlp.dense_4h_to_h.weight", "missing"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        *t = t
            .drain()
            .filter(|(k, _)| k != "transformer.ln_f.bias")
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
    });
    let dir = hf_dir(
        "missing-unprefixed",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "missing ln_f.bias, unprefixed names",
        &["ln_f.bias", "missing"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        t.remove("transformer.word_embeddings.weight");
    });
    let dir = hf_dir(
        "missing-embeddings",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "missing word_embeddings",
        &["word_embeddings.weight", "missing"],
        || load_dir(&dir),
    );

    let tensors = tensors_with(|t| {
        let name = "transformer.h.0.mlp.dense_h_to_4h.weight";
        let w = t[name].t().unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir("transposed", &f.config_json, &f.tokenizer_json, &tensors);
    cases.err(
        "dense_h_to_4h transposed",
        &[
            "transformer.h.0.mlp.dense_h_to_4h.weight",
            "[32, 128]",
            "[128, 32]",
        ],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.word_embeddings.weight";
        let w = t[name].narrow(0, 0, 300).unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir(
        "short-embeddings",
        &f.config_json,
        &f.tokenizer_json,
        &tensors,
    );
    cases.err(
        "word_embeddings of 300 rows",
        &["word_embeddings.weight", "[300, 32]", "[384, 32]"],
        || load_dir(&dir),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.h.1.input_layernorm.weight";
        let w = t[name].to_dtype(candle_core::DType::U8).unwrap();
        t.insert(name.into(), w);
    });
    let dir = hf_dir("u8-norm", &f.config_json, &f.tokenizer_json, &tensors);
    cases.no_panic("layer norm stored as u8", || load_dir(&dir));

    // No weights at all, a bad index, a missing shard.
    let dir = valid_hf_dir("no-weights");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    cases.err("no safetensors", &["model.safetensors"], || load_dir(&dir));
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": ",
    )
    .unwrap();
    cases.err("index not JSON", &["model.safetensors.index.json"], || {
        load_dir(&dir)
    });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"metadata\": {}}",
    )
    .unwrap();
    cases.err(
        "index without weight_map",
        &["model.safetensors.index.json", "weight_map"],
        || load_dir(&dir),
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": {\"a\": 3}}",
    )
    .unwrap();
    cases.err(
        "index with a number for a file",
        &["model.safetensors.index.json", "weight_map"],
        || load_dir(&dir),
    );
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        "{\"weight_map\": {\"a\": \"../../x\"}}",
    )
    .unwrap();
    cases.err(
        "index pointing outside the directory",
        &["model.safetensors.index.json", "../../x"],
        || load_dir(&dir),
    );

    let (first, second): (HashMap<_, _>, HashMap<_, _>) = f
        .tensors
        .clone()
        .into_iter()
        .partition(|(k, _)| k.contains(".h.0.") || k.contains("word_"));
    let shard = |i: usize| format!("model-0000{i}-of-00002.safetensors");
    let weight_map: serde_json::Map<String, serde_json::Value> = first
        .keys()
        .map(|k| (k.clone(), shard(1).into()))
        .chain(second.keys().map(|k| (k.clone(), shard(2).into())))
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string();
    std::fs::write(dir.path().join("model.safetensors.index.json"), &index).unwrap();
    candle_core::safetensors::save(&first, dir.path().join(shard(1))).unwrap();
    candle_core::safetensors::save(&second, dir.path().join(shard(2))).unwrap();
    cases.ok("valid sharded directory", || load_dir(&dir));
    std::fs::remove_file(dir.path().join(shard(2))).unwrap();
    cases.err("index pointing at a missing shard", &[&shard(2)], || {
        load_dir(&dir)
    });

    // Truncated or corrupt safetensors.
    let dir = valid_hf_dir("truncated");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for k in 0..16 {
        let cut = bytes.len() * k / 16;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        cases.err(
            &format!("safetensors truncated to {cut} of {}", bytes.len()),
            &["model.safetensors"],
            || load_dir(&dir),
        );
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut corrupt = bytes.clone();
    corrupt[8] = b'!';
    std::fs::write(&path, &corrupt).unwrap();
    cases.err(
        "safetensors header not JSON",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    let mut corrupt = bytes.clone();
    corrupt[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &corrupt).unwrap();
    cases.err(
        "safetensors header length 2^60",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    let header = serde_json::json!({
        "transformer.word_embeddings.weight":
            {"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 16]}
    })
    .to_string();
    let mut crafted = (header.len() as u64).to_le_bytes().to_vec();
    crafted.extend_from_slice(header.as_bytes());
    crafted.extend_from_slice(&[0; 16]);
    std::fs::write(&path, &crafted).unwrap();
    cases.err(
        "safetensors tensor 2^40 × 2^40",
        &["model.safetensors"],
        || load_dir(&dir),
    );
    assert!(header_len < bytes.len());
    cases.finish();
}

#[test]
fn in_memory_hf_checkpoint() {
    let mut cases = Cases::default();
    let f = fixture();
    let open = |config: &str, tokenizer: &str, tensors: HashMap<String, Tensor>| {
        loader::open_hf(
            config,
            tokenizer.as_bytes(),
            TensorStore::Loaded(tensors),
            "mem",
            String::new(),
            &Device::Cpu,
        )
        .and_then(|opened| opened.build(&Device::Cpu))
    };
    cases.ok("valid in-memory checkpoint", || {
        open(&f.config_json, &f.tokenizer_json, f.tensors.clone())
    });
    let tensors = tensors_with(|t| {
        t.remove("transformer.h.0.self_attention.query_key_value.bias");
    });
    cases.err(
        "in memory: missing qkv bias",
        &["mem", "h.0.self_attention.query_key_value.bias"],
        || open(&f.config_json, &f.tokenizer_json, tensors),
    );
    let tensors = tensors_with(|t| {
        let name = "transformer.h.0.self_attention.query_key_value.weight";
        let w = t[name].narrow(0, 0, 48).unwrap().contiguous().unwrap();
        t.insert(name.into(), w);
    });
    cases.err(
        "in memory: qkv of half the rows",
        &["mem", "query_key_value.weight", "[48, 32]", "[96, 32]"],
        || open(&f.config_json, &f.tokenizer_json, tensors),
    );
    cases.finish();
}
