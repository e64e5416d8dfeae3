//! Whether a model fits in the memory of a WebAssembly page, decided from sizes known before
//! anything is downloaded: a file's size (a local file's, a server's `Content-Length`, the
//! models index's `bytes`), and, once its header or `config.json` is read, the model's shape.
//!
//! A wasm32 module addresses at most 4 GiB ([`WASM32_MEMORY`]; the threaded worker is linked
//! with `--max-memory=4294967296`, and Chromium allows no more). What a loaded model holds
//! there ([`MemoryNeed`]):
//!
//! - its weights: the GGUF file's tensors as they are stored, plus what loading adds (the
//!   largest tensor read once more, small tensors widened to f32): measured at 1.05× the file
//!   for both bloom-560m files (BENCHMARKS.md, "Hub loader memory"); counted as 1/16 more.
//!   (The relaxed-SIMD builds hold a q4_k output projection twice while they repack it: 144 MB
//!   more for a moment with bloom-560m, taken from the headroom, then reused by the session.)
//!   Once the file's type is known ([`MemoryNeed::with_weight_type`]), an f16 or bf16 file
//!   counts twice: candle widens those matrices to f32 when the model is built;
//! - the keys and values of a full context (f16, as the worker keeps them; one sequence of
//!   `context_length` positions: `2 × n_layer × context_length × hidden_size × 2` bytes; 201 MB
//!   for bloom-560m), when the
//!   shape is known;
//! - [`HEADROOM`] for the rest: code, stacks, the tokenizer, the activations and logits of a
//!   round of three candidates and their own positions (a round of bloom-560m after loading
//!   grows the memory by 60–100 MB, BENCHMARKS.md).
//!
//! Before the shape is known only the weights and the headroom are counted: a file that fails
//! then fails whatever its shape.

use crate::engine::config::BloomConfig;
use crate::engine::kernels::attention::CHUNK;
use crate::engine::kv_cache::BLOCK;
use crate::engine::weights::OpenedModel;

/// The bytes a wasm32 module can address: 4 GiB.
pub const WASM32_MEMORY: u64 = 4 << 30;

/// Working memory beyond the weights and the keys and values (see the module documentation).
pub const HEADROOM: u64 = 256 << 20;

/// The memory a model needs in a WebAssembly page, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// The model file's size.
    pub file_bytes: u64,
    /// The weights once loaded.
    pub weights: u64,
    /// The keys and values of a full context, with the context's length, when the shape is known.
    pub kv_cache: Option<(u64, usize)>,
    /// Everything else.
    pub headroom: u64,
}

impl MemoryNeed {
    /// The need of a model file of `file_bytes`, of shape `config` when known.
    pub fn new(file_bytes: u64, config: Option<&BloomConfig>) -> Self {
        MemoryNeed {
            file_bytes,
            weights: file_bytes.saturating_add(file_bytes / 16),
            kv_cache: config.map(|c| (kv_cache_bytes(c), c.context_length)),
            headroom: HEADROOM,
        }
    }

    /// The need once the type of the file's matrices is known (`quantization` as in
    /// `ModelIdentity`, e.g. `q8_0`, `f16`): f16 and bf16 matrices are widened to f32 when the
    /// model is built, so such a file counts twice (and 1/16 more).
    pub fn with_weight_type(mut self, quantization: &str) -> Self {
        if matches!(quantization, "f16" | "bf16") {
            let widened = self.file_bytes.saturating_mul(2);
            self.weights = widened.saturating_add(widened / 16);
        }
        self
    }

    /// The need of the opened model file of `file_bytes` (its header read): its shape and the
    /// type of its matrices known.
    pub fn of_opened(file_bytes: u64, opened: &OpenedModel<'_>) -> Self {
        Self::new(file_bytes, Some(&opened.config)).with_weight_type(&opened.identity.quantization)
    }

    /// All of it.
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.kv_cache.map_or(0, |(bytes, _)| bytes))
            .saturating_add(self.headroom)
    }

    /// `Ok` when the model fits in [`WASM32_MEMORY`]; else the message for the writer, naming
    /// `what` (the file, URL or repository) and the sizes.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if self.total() <= WASM32_MEMORY {
            return Ok(());
        }
        let kv = match self.kv_cache {
            Some((bytes, context)) => format!(
                ", {} for the keys and values of a full {context}-token story",
                human_bytes(bytes)
            ),
            None => String::new(),
        };
        Err(format!(
            "{what} is too large for the browser: the model file is {} and needs about {} of \
             memory for its weights{kv} and {} for the rest, {} in all, more than the {} a \
             WebAssembly page can address. Choose a smaller model or quantization (q4_0), or \
             run it with the storywriter command line.",
            human_bytes(self.file_bytes),
            human_bytes(self.weights),
            human_bytes(self.headroom),
            human_bytes(self.total()),
            human_bytes(WASM32_MEMORY),
        ))
    }
}

/// The keys and values of one sequence of a full context, in f16 (the worker's `KvDtype`).
pub fn kv_cache_bytes(config: &BloomConfig) -> u64 {
    [config.n_layer, config.context_length, config.hidden_size]
        .iter()
        .fold(2 * 2, |acc: u64, &n| acc.saturating_mul(n as u64))
}

/// The most a writing session holds beyond the loaded weights, whatever the story's length: the
/// keys and values of a full context ([`kv_cache_bytes`]), each of `candidates` candidates'
/// own positions (a block of [`BLOCK`], f16), the bounds attention keeps on their keys' scores
/// (see `kernels::attention`), and the largest transient work, a prefill piece of
/// [`BLOCK`] positions (its hidden states through a layer, ~20 rows of `hidden_size` f32 per
/// position: the layer norm, fused QKV, the heads, the MLP's 4× width and the residuals; its
/// `BLOCK` × `BLOCK` scores per head, with their exponentials and bias) and the candidates'
/// logits, twice (the sampler's copy).
///
/// The web worker claims it once, when the model is loaded, so that its memory does not grow
/// as the story does (wasm memory never shrinks; a full context's worth reached at round 80
/// would otherwise be a step in the middle of a session), and a model the browser cannot
/// give it fails at load, not in the middle of a story.
pub fn session_working_set(config: &BloomConfig, candidates: usize) -> u64 {
    let [layers, hidden, heads, vocab, block, candidates] = [
        config.n_layer,
        config.hidden_size,
        config.n_head,
        config.vocab_size,
        BLOCK,
        candidates,
    ]
    .map(|n| n as u64);
    let f16 = 2;
    let f32 = 4;
    let own_positions = candidates * block * 2 * layers * hidden * f16;
    let piece_hidden = block * hidden * 20 * f32;
    let piece_scores = heads * block * block * 3 * f32;
    let logits = 2 * candidates * vocab * f32;
    // A ball of `head_dim + 1` f32 per head and chunk of keys (attention's bounds).
    let chunks = (config.context_length as u64 + candidates * block) / CHUNK as u64;
    let key_bounds = chunks * layers * heads * (hidden / heads + 1) * f32;
    kv_cache_bytes(config)
        .saturating_add(own_positions)
        .saturating_add(key_bounds)
        .saturating_add(piece_hidden)
        .saturating_add(piece_scores)
        .saturating_add(logits)
}

/// The most candidates a round writes in the page and in the `<story-writer>` element (their
/// settings offer 1 to 3): what the claim at load counts.
pub const MOST_CANDIDATES: usize = 3;

/// The pieces [`claim_session_memory`] takes its claim in: the free blocks loading left (the
/// stored output projection, freed once the relaxed-SIMD build repacked it: 144 MB for
/// bloom-560m) take as many as fit, and the heap grows only by the rest (one block of the whole
/// claim fit in none of them, and grew the heap by all of it). The session's own blocks (a
/// cache block, a round's logits) are far smaller.
const CLAIM_PIECE: u64 = 16 << 20;

/// Grows the heap, once, by what a writing session of rounds of up to `candidates` candidates on
/// the model `name` of shape `config` will hold at its peak ([`session_working_set`]), and frees
/// it for the session to use: in a wasm worker the memory then stays flat however long the story
/// grows, and a browser that cannot give that much fails here, with a message, not in the middle
/// of a story.
pub fn claim_session_memory(
    name: &str,
    config: &BloomConfig,
    candidates: usize,
) -> Result<(), String> {
    let bytes = session_working_set(config, candidates);
    let mut claim: Vec<Vec<u8>> = Vec::new();
    let mut left = bytes;
    while left > 0 {
        let size = left.min(CLAIM_PIECE);
        let mut piece: Vec<u8> = Vec::new();
        piece.try_reserve_exact(size as usize).map_err(|_| {
            format!(
                "{name}: the browser could not give the worker the {} a full story needs beside \
                 the model's weights (its keys and values and a round's work). Close other tabs, \
                 or choose a smaller model or quantization (q4_0).",
                human_bytes(bytes)
            )
        })?;
        claim.push(piece);
        left -= size;
    }
    // Freed at once: the allocator keeps the grown memory for the session's own blocks.
    drop(std::hint::black_box(claim));
    Ok(())
}

/// `1.5 MB`, `320 kB`, `12 B` (decimal units; 4 GiB is `4.29 GB`).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_layer: usize, hidden_size: usize) -> BloomConfig {
        BloomConfig {
            n_layer,
            hidden_size,
            ..BloomConfig::bloom_560m()
        }
    }

    #[test]
    fn bloom_560m_files_fit_and_its_cache_is_201_mb() {
        let config = BloomConfig::bloom_560m();
        assert_eq!(kv_cache_bytes(&config), 201_326_592);
        for file in [466_000_000, 601_000_000, 1_120_000_000] {
            let need = MemoryNeed::new(file, Some(&config));
            assert!(need.check("bloom-560m.gguf").is_ok(), "{need:?}");
        }
    }

    #[test]
    fn a_session_of_bloom_560m_claims_its_full_context_and_a_round_s_work() {
        let config = BloomConfig::bloom_560m();
        let need = session_working_set(&config, 3);
        // 201 MB of keys and values, 75 MB of the candidates' own positions, 4 MB of bounds on
        // their keys, 21 + 13 MB for a prefill piece and 6 MB of logits.
        assert_eq!(
            need,
            201_326_592 + 75_497_472 + 4_392_960 + 20_971_520 + 12_582_912 + 6_021_120
        );
        // Within what the memory check counts beside the weights.
        assert!(need <= kv_cache_bytes(&config) + HEADROOM);
    }

    #[test]
    fn a_file_beyond_the_limit_is_refused_naming_it_and_the_sizes() {
        // bloom-7b1 at q8_0: 30 layers of width 4096, ~7.5 GB.
        let config = shape(30, 4096);
        let message = MemoryNeed::new(7_500_000_000, Some(&config))
            .check("bigscience/bloom-7b1")
            .unwrap_err();
        assert!(
            message.starts_with("bigscience/bloom-7b1 is too large"),
            "{message}"
        );
        for part in [
            "7.50 GB",
            "7.97 GB",
            "1.01 GB",
            "2048-token",
            "4.29 GB",
            "q4_0",
        ] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
        // Unknown shape: the weights alone already exceed it.
        let message = MemoryNeed::new(5 << 30, None)
            .check("huge.gguf")
            .unwrap_err();
        assert!(
            message.contains("huge.gguf") && message.contains("5.37 GB"),
            "{message}"
        );
        assert!(!message.contains("keys and values"), "{message}");
    }

    #[test]
    fn the_limit_counts_the_cache_and_the_headroom() {
        let config = shape(24, 1024);
        let kv = kv_cache_bytes(&config);
        // The largest file that fits: weights (17/16 of it) + cache + headroom = 4 GiB.
        let room = WASM32_MEMORY - kv - HEADROOM;
        let largest = room * 16 / 17;
        assert!(MemoryNeed::new(largest, Some(&config)).check("a").is_ok());
        assert!(MemoryNeed::new(largest + 17, Some(&config))
            .check("a")
            .is_err());
        // Without the shape, a file of that size still fits, one near 4 GiB does not.
        assert!(MemoryNeed::new(largest + 17, None).check("a").is_ok());
        assert!(MemoryNeed::new(WASM32_MEMORY - HEADROOM, None)
            .check("a")
            .is_err());
        // Absurd sizes saturate instead of overflowing.
        assert!(
            MemoryNeed::new(u64::MAX, Some(&shape(usize::MAX, usize::MAX)))
                .check("a")
                .is_err()
        );
    }

    #[test]
    fn f16_matrices_count_twice() {
        let config = BloomConfig::bloom_560m();
        let file = 1_900_000_000;
        let need = MemoryNeed::new(file, Some(&config));
        assert!(need.check("a").is_ok());
        for quantization in ["q4_0", "q8_0", "f32"] {
            assert_eq!(need.with_weight_type(quantization), need);
        }
        let f16 = need.with_weight_type("f16");
        assert_eq!(f16.weights, 2 * file + 2 * file / 16);
        let message = f16.check("bloom-f16.gguf").unwrap_err();
        assert!(
            message.contains("4.04 GB of memory for its weights"),
            "{message}"
        );
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(320_000), "320 kB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(WASM32_MEMORY), "4.29 GB");
    }
}
