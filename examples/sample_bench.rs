//! Times one candidate's sampling step on a bloom-560m-sized vocabulary: `Sampler::sample` with
//! the bundled table's typical parameters (all warpers on) plus the recorded `log_prob`, as
//! `generate` runs them for every candidate and token.
//!
//! `cargo run --release --example sample_bench` (see BENCHMARKS.md).

use std::time::Instant;
use storywriter::engine::sampling::{log_prob, Sampler, SamplingParams};

const VOCAB: usize = 250_880;
const REPEATS: usize = 200;

fn main() {
    let mut state = 12_345u32;
    let logits: Vec<f32> = (0..VOCAB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 * 2.0 - 1.0) * 8.0
        })
        .collect();
    let params = SamplingParams {
        temperature: 0.855,
        top_k: 40,
        top_p: 0.922,
        typical_p: 0.97,
        repetition_penalty: 1.145,
        ..SamplingParams::default()
    };
    let context: Vec<u32> = (0..300u32).map(|i| (i * 7919) % VOCAB as u32).collect();
    let mut sampler = Sampler::new(params, 7).expect("valid parameters");
    let mut ids = Vec::with_capacity(REPEATS);
    let start = Instant::now();
    for _ in 0..REPEATS {
        let id = sampler.sample(&logits, &context).expect("a token");
        std::hint::black_box(log_prob(&logits, id));
        ids.push(id);
    }
    let step_ms = start.elapsed().as_secs_f64() / REPEATS as f64 * 1e3;
    let start = Instant::now();
    for &id in &ids {
        std::hint::black_box(log_prob(&logits, id));
    }
    let log_prob_ms = start.elapsed().as_secs_f64() / REPEATS as f64 * 1e3;
    println!("sample + log_prob: {step_ms:.3} ms; log_prob alone: {log_prob_ms:.3} ms");
    println!("first ids: {:?}", &ids[..8]);
}
