//! Writes a large seeded selection log in our record schema, for `scripts/bench_stats.sh`.
//!
//! Usage: `cargo run --release --example gen_records -- OUT.jsonl [RECORDS] [SEED] [HIDDEN]`
//! (default 1,000,000 records, seed 0, no hidden state; HIDDEN random values in `hidden_mean`). Stories of 1–60 steps, three candidates a step, one of
//! them chosen at nine steps in ten; each record carries a 100-token input window and a 32-token
//! output with log-probabilities (about 2.3 KB of JSON), so parsing costs what real logs cost.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storywriter::generate::FinishReason;
use storywriter::loader::ModelIdentity;
use storywriter::records::{CandidateRecord, RECORD_SCHEMA};
use storywriter::sampling::SamplingParams;
use storywriter::shared::HiddenState;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .context("usage: gen_records OUT.jsonl [RECORDS] [SEED] [HIDDEN]")?;
    let total: usize = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let seed: u64 = args.next().map_or(Ok(0), |s| s.parse())?;
    let hidden: usize = args.next().map_or(Ok(0), |s| s.parse())?;
    let file = std::fs::File::create(&out).with_context(|| format!("cannot create {out}"))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = ModelIdentity {
        name: "bloom-560m-q4_0.gguf".to_string(),
        format: "gguf".to_string(),
        quantization: "q4_0".to_string(),
        content_hash: "5e".repeat(32),
    };
    let input_text = "The lighthouse keeper had not spoken to anyone in nine days. ".repeat(6);
    let mut written = 0;
    let mut story = 0u64;
    while written < total {
        story += 1;
        let length = rng.random_range(1..=60u32);
        let mut parent = None;
        for step in 1..=length {
            let chosen = rng.random_bool(0.9).then(|| rng.random_range(1..=3u32));
            for candidate in 1..=3u32 {
                if written == total {
                    break;
                }
                written += 1;
                let record_id = format!("{:032x}", rng.random::<u128>());
                let is_chosen = chosen == Some(candidate);
                let drift = step.min(30) as f32 / 30.0;
                let record = CandidateRecord {
                    schema: RECORD_SCHEMA.to_string(),
                    record_id: record_id.clone(),
                    story_id: format!("{story:032x}"),
                    step,
                    candidate,
                    parent_record_id: parent.clone(),
                    input_text: input_text.as_str().into(),
                    input_ids: (0..100).map(|_| rng.random_range(3..250_880)).collect(),
                    params: SamplingParams {
                        temperature: rng.random_range(0.3..1.5f32) + 0.3 * drift,
                        top_k: [0, 20, 40, 50, 100][rng.random_range(0..5)],
                        top_p: rng.random_range(0.5..=1.0f32),
                        typical_p: if rng.random_bool(0.8) { 1.0 } else { 0.9 },
                        repetition_penalty: [1.0, 1.05, 1.1, 1.2][rng.random_range(0..4)],
                        max_new_tokens: rng.random_range(16..=128),
                        ..SamplingParams::default()
                    },
                    policy: "step-sample".to_string(),
                    param_table: Some("bundled".to_string()),
                    seed: rng.random_range(0..1u64 << 53),
                    output_text: " and the sea kept its own counsel".to_string(),
                    output_ids: (0..32).map(|_| rng.random_range(3..250_880)).collect(),
                    logprobs: (0..32).map(|_| -rng.random_range(0.0..6.0f32)).collect(),
                    finish_reason: FinishReason::Length,
                    chosen: is_chosen,
                    chosen_by: is_chosen.then(|| "human".to_string()),
                    created_at: "2025-01-02T03:04:05.678Z".to_string(),
                    chosen_at: is_chosen.then(|| "2025-01-02T03:05:00.000Z".to_string()),
                    model: model.clone(),
                    app_version: "storywriter 0.1.0".to_string(),
                    display_position: Some(candidate),
                    mix_slot: Some(candidate),
                    order_seed: None,
                    log_propensity: None,
                    decision_ms: is_chosen.then_some(54_322),
                    rejected_all_at: None,
                    edited_at: None,
                    edited_text: None,
                    hidden_mean: (hidden > 0).then(|| {
                        let values: Vec<f32> =
                            (0..hidden).map(|_| rng.random_range(-1.0..1.0)).collect();
                        HiddenState::from_f32(&values)
                    }),
                    rerolled_from: None,
                };
                if is_chosen {
                    parent = Some(record_id);
                }
                serde_json::to_writer(&mut writer, &record)?;
                writer.write_all(b"\n")?;
            }
        }
    }
    writer.flush()?;
    eprintln!("wrote {written} records of {story} stories to {out}");
    Ok(())
}
