//! Dataset export and import: round trips lose and duplicate nothing, bad lines are reported
//! with their numbers while good ones are kept, conflicts and later choices are handled, the
//! preference pairs and the card are right, and the CLI does the same end to end.
//!
//! The records come from [`sample`]: three stories, three candidates per round, a branch (two
//! choices in one round, so the next step appears under two parents), a regenerated round,
//! rounds without a choice, identical candidate texts, and unicode, emoji, HTML, tabs,
//! newlines, quotes and backslashes in the texts. `tests/fixtures/records_sample.jsonl` is the
//! same records as JSON Lines (for tests/check_datasets.py); regenerate it with
//! `STORYWRITER_UPDATE_FIXTURES=1 cargo test --test integration dataset::`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use serde_json::Value;
use storywriter::data::unpaired::UNPAIRED_FILE;
use storywriter::dataset::{
    dataset_card, merge_records, parse_records, preference_pairs, preferences_jsonl, read_records,
    record_json_line, record_lines, records_jsonl, DatasetFiles, LineContent, MergeOutcome, Merger,
    CARD_FILE, PREFERENCES_FILE, RECORDS_FILE,
};
use storywriter::generate::{generate, CandidateSpec, FinishReason};
use storywriter::loader::{native, ModelIdentity};
use storywriter::records::{CandidateRecord, RECORD_SCHEMA};
use storywriter::sampling::SamplingParams;

mod bad_lines;
mod card;
mod cli;
mod round_trips;

// ---------------------------------------------------------------------------------------------
// Sample records
// ---------------------------------------------------------------------------------------------

const RECORDS: usize = 30;
const PAIRS: usize = 14;
const SAMPLE_FIXTURE: &str = "tests/fixtures/records_sample.jsonl";

fn model(name: &str, format: &str, quantization: &str, hash_byte: u8) -> ModelIdentity {
    ModelIdentity {
        name: name.into(),
        format: format.into(),
        quantization: quantization.into(),
        content_hash: format!("{hash_byte:02x}").repeat(32),
    }
}

/// Builds generation rounds of three candidates the way the app records them.
struct Sample {
    records: Vec<CandidateRecord>,
}

impl Sample {
    /// Adds one round; `chosen` lists (candidate 1..=3, chosen_by). Returns the record ids.
    #[allow(clippy::too_many_arguments)]
    fn round(
        &mut self,
        story: u32,
        step: u32,
        parent: Option<&str>,
        input: &str,
        outputs: [&str; 3],
        chosen: &[(u32, &str)],
        model: &ModelIdentity,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for (candidate, output) in (1u32..).zip(outputs) {
            let n = self.records.len() as u64 + 1;
            let finish_reason = [
                FinishReason::Length,
                FinishReason::SentenceEnd,
                FinishReason::Eos,
                FinishReason::Stopped,
            ][(n % 4) as usize];
            let mut output_ids: Vec<u32> = output.chars().map(|c| 4 + c as u32 % 996).collect();
            if finish_reason == FinishReason::Eos {
                output_ids.push(2);
            }
            let logprobs = (0..output_ids.len())
                .map(|i| -0.125 * (i % 7) as f32 - 0.5 / candidate as f32)
                .collect();
            let params = SamplingParams {
                greedy: n == 7,
                temperature: [0.7, 1.0, 1.3][candidate as usize - 1] + 0.05 * step as f32,
                top_k: [40, 50, 0][candidate as usize - 1],
                top_p: [0.9, 1.0, 0.95][candidate as usize - 1],
                min_p: if candidate == 3 { 0.05 } else { 0.0 },
                typical_p: if candidate == 2 { 0.9 } else { 1.0 },
                repetition_penalty: 1.0 + 0.1 * (candidate - 1) as f32,
                max_new_tokens: 24 + 8 * candidate as usize,
                stop_at_sentence_end: candidate != 1,
            };
            let choice = chosen.iter().find(|(c, _)| *c == candidate);
            let record = CandidateRecord {
                schema: RECORD_SCHEMA.into(),
                record_id: format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 0xabc),
                story_id: format!("{:032x}", 0x5701_0000 + story),
                step,
                candidate,
                parent_record_id: parent.map(String::from),
                input_text: input.into(),
                input_ids: input.chars().map(|c| 4 + c as u32 % 996).collect(),
                params,
                policy: ["step-mean", "step-sample", "coupled-random"][candidate as usize - 1]
                    .into(),
                param_table: Some("bundled table".into()),
                seed: if n == 5 { (1 << 53) - 1 } else { 1000 * n + 7 },
                output_text: output.into(),
                output_ids,
                logprobs,
                finish_reason,
                chosen: choice.is_some(),
                chosen_by: choice.map(|(_, by)| by.to_string()),
                created_at: format!("2026-11-29T08:{:02}:{:02}.{:03}Z", n / 10, n % 60, n * 7),
                chosen_at: choice.map(|_| format!("2026-11-29T09:{:02}:00.000Z", n)),
                model: model.clone(),
                app_version: "storywriter 0.1.0".into(),
                display_position: Some(candidate),
                mix_slot: Some(4 - candidate),
                order_seed: Some(n * 31),
                log_propensity: [Some(0.0), Some(-2.5 - (n % 7) as f64), None]
                    [candidate as usize - 1],
                decision_ms: choice.map(|_| 1500 + n * 10),
                rejected_all_at: None,
                edited_at: None,
                edited_text: None,
                hidden_mean: None,
                rerolled_from: None,
            };
            ids.push(record.record_id.clone());
            self.records.push(record);
        }
        ids
    }
}

/// 30 records in 10 generation rounds (9 rounds by story, step and parent) of 3 stories; 14
/// preference pairs.
fn sample() -> Vec<CandidateRecord> {
    let q4 = model("bloom-560m-q4_0.gguf", "gguf", "q4_0", 0xa4);
    let f32_model = model("bloom-560m", "safetensors", "f32", 0x3f);
    let mut s = Sample {
        records: Vec::new(),
    };

    // Story 1: English and emoji, a branch at step 1 (two choices: no pairs there).
    let open = "Once upon a time, in a lighthouse by the sea 🌊,";
    let out1 = [
        " a keeper counted the waves.",
        " there lived a cat named Müsli 🐈.",
        " the lamp went dark — for the first time in 100 years.",
    ];
    let r1 = s.round(1, 1, None, open, out1, &[(2, "human"), (3, "human")], &q4);
    let text2 = format!("{open}{}", out1[1]);
    let out2 = [
        " She hated storms.",
        " Every night she climbed the 127 steps.",
        " \"Meow,\" she said, & the fog listened.",
    ];
    let r2 = s.round(1, 2, Some(&r1[1]), &text2, out2, &[(1, "human")], &q4);
    let text3 = format!("{open}{}", out1[2]);
    s.round(
        1,
        2,
        Some(&r1[2]),
        &text3,
        [
            " Ships turned back.",
            " Nobody noticed, except the gulls.",
            " In the dark, a second light answered from the cliffs 🔦.",
        ],
        &[(3, "longest")],
        &q4,
    );
    s.round(
        1,
        3,
        Some(&r2[0]),
        &format!("{text2}{}", out2[0]),
        [" The end.", " Thunder rolled.", " 🌩️🌩️🌩️"],
        &[],
        &q4,
    );

    // Story 2: French, HTML, CJK, tabs and newlines; two identical candidates at step 1.
    let open = "<p>Il était une fois</p> 🇫🇷";
    let out5 = [
        " une reine très curieuse.",
        " une reine très curieuse.",
        " 一只会说话的猫。",
    ];
    let r5 = s.round(2, 1, None, open, out5, &[(1, "shortest")], &f32_model);
    let text6 = format!("{open}{}", out5[0]);
    let out6 = [
        " <b>Elle</b> aimait les <i>énigmes</i>.",
        " Tab\there,\nnewline there.\r\n",
        " 👩‍👩‍👧‍👦 famille & amis <script>alert(1)</script>",
    ];
    let r6 = s.round(
        2,
        2,
        Some(&r5[0]),
        &text6,
        out6,
        &[(3, "human")],
        &f32_model,
    );
    s.round(
        2,
        3,
        Some(&r6[2]),
        &format!("{text6}{}", out6[2]),
        [" Fin.", " — Vraiment ?", " مرحبا नमस्ते"],
        &[],
        &f32_model,
    );

    // Story 3: quotes and backslashes; step 2 generated twice under the same parent.
    let open = "The robot wrote: \"Hello, \\world\\\"";
    let out8 = [" and stopped.", " and waited for an answer.", " twice."];
    let r8 = s.round(3, 1, None, open, out8, &[(2, "human")], &q4);
    let text9 = format!("{open}{}", out8[1]);
    // The writer rejected this round as a whole and asked again.
    let rejected = s.round(
        3,
        2,
        Some(&r8[1]),
        &text9,
        [" None came.", " C:\\Users\\robot> _", " {\"reply\": null}"],
        &[],
        &q4,
    );
    for record in s.records.iter_mut() {
        if rejected.contains(&record.record_id) {
            record.rejected_all_at = Some("2026-11-29T09:30:00.000Z".into());
        }
    }
    s.round(
        3,
        2,
        Some(&r8[1]),
        &text9,
        [" At last: \"Hi.\"", " Silence.", " 01101000 01101001"],
        &[(1, "human")],
        &q4,
    );
    assert_eq!(s.records.len(), RECORDS);
    s.records
}

/// A scratch directory for one test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("storywriter-dataset-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn by_id(records: &[CandidateRecord]) -> BTreeMap<&str, &CandidateRecord> {
    records.iter().map(|r| (r.record_id.as_str(), r)).collect()
}
