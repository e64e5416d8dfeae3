//! Dataset export and import: round trips lose and duplicate nothing, bad lines are reported
//! with their numbers while good ones are kept, conflicts and later choices are handled, the
//! preference pairs and the card are right, and the CLI does the same end to end.
//!
//! The records come from [`sample`]: three stories, three candidates per round, a branch (two
//! choices in one round, so the next step appears under two parents), a regenerated round,
//! rounds without a choice, identical candidate texts, and unicode, emoji, HTML, tabs,
//! newlines, quotes and backslashes in the texts. `tests/fixtures/records_sample.jsonl` is the
//! same records as JSON Lines (for tests/check_datasets.py); regenerate it with
//! `STORYWRITER_UPDATE_FIXTURES=1 cargo test --test dataset`.

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

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn records_from_before_param_table_still_parse() {
    let record = &sample()[0];
    let mut value = serde_json::to_value(record).unwrap();
    value.as_object_mut().unwrap().remove("param_table");
    let (parsed, errors) = parse_records(&value.to_string(), "old.jsonl");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(parsed[0].param_table, None);
    assert_eq!(parsed[0].record_id, record.record_id);
}

#[test]
fn sample_fixture_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE_FIXTURE);
    let expected = records_jsonl(&sample());
    if std::env::var_os("STORYWRITER_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(
        stored == expected,
        "{SAMPLE_FIXTURE} is stale: run STORYWRITER_UPDATE_FIXTURES=1 cargo test --test dataset"
    );
}

#[test]
fn export_then_import_into_an_empty_store_keeps_every_record_once() {
    let records = sample();
    let (parsed, errors) = parse_records(&records_jsonl(&records), "records.jsonl");
    assert_eq!(errors, vec![]);
    let report = merge_records(Vec::new(), parsed);
    assert_eq!(report.records.len(), RECORDS);
    assert_eq!(by_id(&report.records), by_id(&records));
    assert_eq!(
        (report.added, report.duplicates, report.updated.len()),
        (RECORDS, 0, 0)
    );
    assert!(report.conflicts.is_empty());
}

#[test]
fn export_then_import_into_a_store_holding_half_keeps_every_record_once() {
    let records = sample();
    // The store holds every other record, in reverse order.
    let store: Vec<CandidateRecord> = records.iter().step_by(2).rev().cloned().collect();
    let (parsed, errors) = read_records(records_jsonl(&records).as_bytes(), "export").unwrap();
    assert_eq!(errors, vec![]);
    let report = merge_records(store.clone(), parsed);

    assert_eq!(
        report.records.len(),
        RECORDS,
        "nothing lost, nothing duplicated"
    );
    assert_eq!(
        &report.records[..store.len()],
        &store[..],
        "store kept in its order"
    );
    assert_eq!(by_id(&report.records), by_id(&records));
    assert_eq!(
        (report.added, report.duplicates),
        (RECORDS / 2, RECORDS / 2)
    );
    assert!(report.conflicts.is_empty() && report.updated.is_empty());

    // Importing the same export again changes nothing.
    let again = merge_records(report.records.clone(), records.clone());
    assert_eq!(again.records, report.records);
    assert_eq!((again.added, again.duplicates), (0, RECORDS));
}

#[test]
fn every_row_has_every_field_with_one_json_type() {
    fn kind(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    /// Field path → JSON types seen (nulls apart), for every leaf of every row.
    fn collect(prefix: &str, value: &Value, types: &mut BTreeMap<String, BTreeSet<&'static str>>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    collect(&format!("{prefix}.{key}"), value, types);
                }
            }
            Value::Array(items) => {
                for item in items {
                    collect(&format!("{prefix}[]"), item, types);
                }
            }
            Value::Null => {
                types.entry(prefix.to_string()).or_default();
            }
            _ => {
                types
                    .entry(prefix.to_string())
                    .or_default()
                    .insert(kind(value));
            }
        }
    }
    let records = sample();
    let pairs = preference_pairs(&records);
    for text in [records_jsonl(&records), preferences_jsonl(&pairs)] {
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let keys: BTreeSet<Vec<String>> = rows
            .iter()
            .map(|r| r.as_object().unwrap().keys().cloned().collect())
            .collect();
        assert_eq!(keys.len(), 1, "every row has the same fields: {keys:?}");
        let mut types = BTreeMap::new();
        for row in &rows {
            collect("", row, &mut types);
        }
        for (path, kinds) in &types {
            assert!(kinds.len() <= 1, "{path} has several JSON types: {kinds:?}");
        }
    }
}

#[test]
fn rows_that_give_a_field_its_type_come_first() {
    // datasets takes a file's schema from its first 10 MB: a column that is null (or a list that
    // is empty) in every row there fails to cast further down. Here 200 unchosen step-1 records
    // with empty outputs come before the only record with a parent, a choice and outputs.
    let records = sample();
    let mut rows = Vec::new();
    for i in 0..200 {
        let mut record = records[0].clone();
        record.record_id = format!("{i:032x}");
        record.output_ids.clear();
        record.logprobs.clear();
        rows.push(record);
    }
    let complete = records[3].clone();
    assert!(complete.chosen && complete.parent_record_id.is_some());
    rows.push(complete.clone());
    let jsonl = records_jsonl(&rows);
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), rows.len());
    let first: CandidateRecord = serde_json::from_str(lines[0]).unwrap();
    let second: CandidateRecord = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        (first.record_id.as_str(), second.record_id),
        (rows[0].record_id.as_str(), complete.record_id)
    );
    // The others keep their order.
    let rest: Vec<String> = lines[2..]
        .iter()
        .map(|l| {
            serde_json::from_str::<CandidateRecord>(l)
                .unwrap()
                .record_id
        })
        .collect();
    let expected: Vec<String> = rows[1..200].iter().map(|r| r.record_id.clone()).collect();
    assert_eq!(rest, expected);
}

/// Records of real candidates: two steps of a story generated with the tiny fixture model
/// (random weights), candidate 2 chosen at step 1.
fn generated_records() -> Vec<CandidateRecord> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    let loaded = native::load(&dir, &Device::Cpu).unwrap();
    let mut records = Vec::new();
    let mut text = "Once upon a time 🏰 <b>".to_string();
    let mut parent = None;
    for step in 1..=2u32 {
        let ids = loaded.tokenizer.encode(&text).unwrap();
        let specs: Vec<CandidateSpec> = (0..3u64)
            .map(|i| CandidateSpec {
                params: SamplingParams {
                    temperature: 0.6 + 0.4 * i as f32,
                    max_new_tokens: 8,
                    ..SamplingParams::default()
                },
                seed: 100 * u64::from(step) + i,
            })
            .collect();
        let generation = generate(&loaded.model, &loaded.tokenizer, &ids, &specs, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        for (candidate, c) in (1u32..).zip(generation.candidates) {
            let chosen = step == 1 && candidate == 2;
            records.push(CandidateRecord {
                schema: RECORD_SCHEMA.into(),
                record_id: format!("{:032x}", 0xfeed_0000 + 10 * step + candidate),
                story_id: "generated".into(),
                step,
                candidate,
                parent_record_id: parent.clone(),
                input_text: text.clone(),
                input_ids: ids.clone(),
                params: c.params,
                policy: "fixed".into(),
                param_table: None,
                seed: c.seed,
                output_text: c.text,
                output_ids: c.ids,
                logprobs: c.logprobs,
                finish_reason: c.finish_reason,
                chosen,
                chosen_by: chosen.then(|| "human".into()),
                created_at: "2026-11-29T10:00:00.000Z".into(),
                chosen_at: chosen.then(|| "2026-11-29T10:00:05.000Z".into()),
                model: loaded.identity.clone(),
                app_version: "storywriter 0.1.0".into(),
                display_position: None,
                mix_slot: None,
                order_seed: None,
                log_propensity: None,
                decision_ms: None,
                rejected_all_at: None,
                edited_at: None,
                edited_text: None,
            });
        }
        let chosen = &records[records.len() - 2];
        text.push_str(&chosen.output_text);
        parent = Some(chosen.record_id.clone());
    }
    records
}

#[test]
fn records_of_a_real_generation_pass_the_checks_and_round_trip() {
    let records = generated_records();
    let (parsed, errors) = parse_records(&records_jsonl(&records), "generated");
    assert_eq!(errors, vec![], "real records must pass every check");
    assert_eq!(by_id(&parsed), by_id(&records));
    let pairs = preference_pairs(&records);
    let distinct = records[..3]
        .iter()
        .filter(|r| !r.chosen && r.output_text != records[1].output_text)
        .count();
    assert_eq!(pairs.len(), distinct, "step 1 only: step 2 has no choice");
    assert!(pairs
        .iter()
        .all(|p| p.step == 1 && p.chosen == records[1].output_text));
}

// ---------------------------------------------------------------------------------------------
// Bad lines
// ---------------------------------------------------------------------------------------------

/// The JSON of a record with `edit` applied.
fn edited(
    record: &CandidateRecord,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let mut value = serde_json::to_value(record).unwrap();
    edit(value.as_object_mut().unwrap());
    serde_json::to_string(&value).unwrap()
}

#[test]
fn bad_lines_are_reported_with_their_numbers_and_good_lines_kept() {
    let records = sample();
    let good: Vec<String> = records[..6]
        .iter()
        .map(|r| record_json_line(r).trim_end().to_string())
        .collect();
    let r = &records[6];
    let lines = [
        good[0].clone(),                                                       // 1
        String::new(),                                                         // 2: blank, fine
        good[1][..good[1].floor_char_boundary(good[1].len() / 2)].to_string(), // 3: truncated
        edited(r, |m| {
            m.insert("seed".into(), "forty-two".into());
        }), // 4: wrong type
        good[2].clone(),                                                       // 5
        edited(r, |m| {
            m.remove("seed");
        }),                // 6: missing field
        edited(r, |m| {
            m.insert("schema".into(), "storywriter.record/3".into());
        }), // 7: wrong schema
        edited(r, |m| {
            m.insert("seed".into(), (1u64 << 53).into());
        }), // 8: seed too large
        edited(r, |m| {
            m.insert("record_id".into(), "".into());
        }), // 9: empty id
        edited(r, |m| {
            m.insert("chosen".into(), true.into());
        }), // 10: chosen without chosen_by
        edited(r, |m| {
            m["params"]["temperature"] = "hot".into();
        }), // 11: nested wrong type
        "   \t".into(),                                                        // 12: blank
        good[3].clone() + "\r",                                                // 13: CRLF, fine
        "[1, 2, 3]".into(),                                                    // 14: not an object
        format!("{} trailing", good[4]),                                       // 15: trailing text
        edited(r, |m| {
            m.insert("step".into(), (-1).into());
        }), // 16: negative step
        edited(r, |m| {
            m.insert("params".into(), serde_json::json!({ "top_p": 0.0 }));
        }), // 17: invalid parameter
        good[5].clone(),                                                       // 18
    ];
    let mut text = lines.join("\n");
    // 19: a log-probability that overflows f32.
    text.push('\n');
    text.push_str(
        &records_jsonl(&records[7..8])
            .replacen("\"logprobs\":[", "\"logprobs\":[1e39,", 1)
            .replacen("\"output_ids\":[", "\"output_ids\":[5,", 1),
    );

    let (parsed, errors) = parse_records(&text, "log.jsonl");
    let ids = |records: &[CandidateRecord]| -> Vec<String> {
        records.iter().map(|r| r.record_id.clone()).collect()
    };
    let kept: Vec<CandidateRecord> = [0, 2, 3, 5].iter().map(|&i| records[i].clone()).collect();
    assert_eq!(ids(&parsed), ids(&kept));
    assert!(parsed == kept);

    let expected = [
        (3, "EOF while parsing"),
        (
            4,
            "field `seed`: invalid type: string \"forty-two\", expected u64",
        ),
        (6, "missing field `seed`"),
        (
            7,
            "field `schema`: expected \"storywriter.record/2\" or \"storywriter.record/1\", got \"storywriter.record/3\"",
        ),
        (8, "field `seed`: must be below 2^53"),
        (9, "field `record_id`: must not be empty"),
        (10, "field `chosen_by`"),
        (
            11,
            "field `params.temperature`: invalid type: string \"hot\", expected f32",
        ),
        (
            14,
            "expected a JSON object (one record per line) (column 1)",
        ),
        (15, "unexpected text after the record"),
        (
            16,
            "field `step`: invalid value: integer `-1`, expected u32",
        ),
        (17, "field `params`: top_p"),
        (19, "field `logprobs[0]`: must be finite"),
    ];
    let got: Vec<(usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), expected.len(), "{got:#?}");
    for (error, (line, needle)) in errors.iter().zip(expected) {
        assert_eq!(error.line, line, "{error}");
        assert!(error.message.contains(needle), "line {line}: {error}");
        assert_eq!(error.origin, "log.jsonl");
        assert!(error
            .to_string()
            .starts_with(&format!("log.jsonl:{line}: ")));
    }
    for line in [3, 4, 6, 11, 14] {
        let error = errors.iter().find(|e| e.line == line).unwrap();
        assert!(error.message.contains("(column "), "{error}");
    }

    // The streaming reader agrees, and keeps each line's bytes.
    let streamed: Vec<_> = record_lines(text.as_bytes(), "log.jsonl")
        .map(Result::unwrap)
        .collect();
    assert_eq!(streamed.len(), 19);
    assert_eq!(streamed[12].raw, lines[12].as_bytes());
    let (read, read_errors) = read_records(text.as_bytes(), "log.jsonl").unwrap();
    assert_eq!((read, read_errors), (parsed, errors));
}

#[test]
fn invalid_utf8_and_a_byte_order_mark_are_handled() {
    let records = sample();
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend_from_slice(records_jsonl(&records[..1]).as_bytes());
    bytes.extend_from_slice(b"{\"schema\": \"\xff\xfe\"}\n");
    bytes.extend_from_slice(records_jsonl(&records[1..2]).as_bytes());
    let lines: Vec<_> = record_lines(bytes.as_slice(), "bom.jsonl")
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0].content,
        LineContent::Record(Box::new(records[0].clone()))
    );
    match &lines[1].content {
        LineContent::Bad(e) => assert_eq!(e.message, "not valid UTF-8 (column 13)"),
        other => panic!("expected a bad line, got {other:?}"),
    }
    assert_eq!(
        lines[2].content,
        LineContent::Record(Box::new(records[1].clone()))
    );
}

// ---------------------------------------------------------------------------------------------
// Merging
// ---------------------------------------------------------------------------------------------

#[test]
fn a_conflicting_record_is_reported_and_the_held_one_kept() {
    let records = sample();
    let mut changed = records[4].clone();
    changed.output_text.push_str(" (edited)");
    changed.seed += 1;
    let mut merger = Merger::new(records.clone());
    assert_eq!(
        merger.add(changed.clone()),
        MergeOutcome::Conflict {
            fields: vec!["output_text".into(), "seed".into()]
        }
    );
    let report = merger.finish();
    assert_eq!(report.records, records);
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].record_id, records[4].record_id);
}

#[test]
fn a_later_choice_updates_the_held_record_in_place() {
    let records = sample();
    // records[9] (story 1, step 3) was never chosen; a later log has it chosen.
    let unchosen = records[9].clone();
    assert!(!unchosen.chosen);
    let mut chosen = unchosen.clone();
    chosen.chosen = true;
    chosen.chosen_by = Some("human".into());
    chosen.chosen_at = Some("2026-11-30T10:00:00.000Z".into());

    let mut merger = Merger::new(records.clone());
    assert_eq!(merger.add(chosen.clone()), MergeOutcome::Updated);
    // The older, unchosen copy arriving afterwards changes nothing.
    assert_eq!(merger.add(unchosen.clone()), MergeOutcome::Duplicate);
    // Chosen again by someone else: a conflict, the first choice stays.
    let mut other_choice = chosen.clone();
    other_choice.chosen_by = Some("longest".into());
    assert_eq!(
        merger.add(other_choice),
        MergeOutcome::Conflict {
            fields: vec!["chosen_by".into()]
        }
    );
    let report = merger.finish();
    assert_eq!(report.updated, vec![9]);
    assert_eq!(report.records[9], chosen);
    assert_eq!(report.records.len(), RECORDS);
    assert_eq!(
        (report.added, report.duplicates, report.conflicts.len()),
        (0, 1, 1)
    );

    // A change beyond the choice fields is a conflict even when it also chooses.
    let mut chosen_and_edited = chosen;
    chosen_and_edited.output_text = "different".into();
    let report = merge_records(records.clone(), [chosen_and_edited]);
    assert_eq!(report.records, records);
    assert_eq!(
        report.conflicts[0].fields,
        ["chosen", "chosen_at", "chosen_by", "output_text"]
    );
}

#[test]
fn repeated_ids_in_the_incoming_records_are_added_once() {
    let records = sample();
    let doubled = records.iter().chain(&records).cloned();
    let report = merge_records(Vec::new(), doubled);
    assert_eq!(report.records, records);
    assert_eq!((report.added, report.duplicates), (RECORDS, RECORDS));
}

// ---------------------------------------------------------------------------------------------
// Preference pairs and the card
// ---------------------------------------------------------------------------------------------

#[test]
fn preference_pairs_come_from_rounds_with_one_choice() {
    let records = sample();
    let pairs = preference_pairs(&records);
    assert_eq!(pairs.len(), PAIRS);
    let ids = by_id(&records);
    for pair in &pairs {
        let chosen = ids[pair.chosen_record_id.as_str()];
        let rejected = ids[pair.rejected_record_id.as_str()];
        assert!(chosen.chosen && !rejected.chosen);
        assert_eq!(
            (&pair.prompt, &pair.chosen, &pair.rejected),
            (
                &chosen.input_text,
                &chosen.output_text,
                &rejected.output_text
            )
        );
        assert_eq!(
            (&pair.story_id, pair.step, &pair.parent_record_id),
            (
                &rejected.story_id,
                rejected.step,
                &rejected.parent_record_id
            )
        );
        assert_eq!(pair.chosen_params, chosen.params);
        assert_eq!(pair.rejected_params, rejected.params);
        assert_eq!(Some(&pair.chosen_by), chosen.chosen_by.as_ref());
        assert_eq!(pair.model, chosen.model);
        assert_ne!(pair.chosen, pair.rejected);
    }
    // Story 1, step 1 has two choices (a branch): no pairs; its step 2 has one round under
    // each branch, two pairs each; step 3 has no choice.
    let story1 = &records[0].story_id;
    let steps: Vec<u32> = pairs
        .iter()
        .filter(|p| &p.story_id == story1)
        .map(|p| p.step)
        .collect();
    assert_eq!(steps, [2, 2, 2, 2]);
    // Story 2, step 1: candidate 2 has the chosen candidate's very text: one pair, with 3.
    let step1: Vec<&str> = pairs
        .iter()
        .filter(|p| p.story_id == records[12].story_id && p.step == 1)
        .map(|p| p.rejected_record_id.as_str())
        .collect();
    assert_eq!(step1, [records[14].record_id.as_str()]);
    // Story 3, step 2 was generated twice under one parent: the chosen candidate of the
    // second round against the five others.
    let regenerated = pairs
        .iter()
        .filter(|p| p.story_id == records[21].story_id && p.step == 2)
        .inspect(|p| assert_eq!(p.chosen_record_id, records[27].record_id))
        .count();
    assert_eq!(regenerated, 5);
    assert_eq!(pairs[0].chosen_by, "human");
    assert!(pairs.iter().any(|p| p.chosen_by == "longest"));
}

#[test]
fn a_candidate_continuing_another_text_gives_no_pair() {
    let mut records = sample();
    // Story 2, step 2 (records 15..18, candidate 3 chosen): candidate 1 continues other text.
    records[15].input_text.push_str(" (edited)");
    let pairs = preference_pairs(&records);
    assert_eq!(pairs.len(), PAIRS - 1);
    assert!(pairs
        .iter()
        .all(|p| p.rejected_record_id != records[15].record_id));
}

#[test]
fn the_card_has_front_matter_fields_and_statistics() {
    let records = sample();
    let pairs = preference_pairs(&records);
    let card = dataset_card(&records, &pairs);
    let (front, body) = card
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .expect("YAML front matter between --- lines");
    for needle in [
        "configs:\n- config_name: records\n  data_files:\n  - split: train\n    path: records.jsonl\n",
        "- config_name: preferences\n  data_files:\n  - split: train\n    path: preferences.jsonl",
        "license: unknown",
        "language:\n- en",
        "task_categories:\n- text-generation",
        "tags:\n- storywriter",
        "size_categories:\n- n<1K",
    ] {
        assert!(front.contains(needle), "front matter lacks {needle:?}:\n{front}");
    }
    // Every column of both files is described.
    for text in [records_jsonl(&records), preferences_jsonl(&pairs)] {
        let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in row.as_object().unwrap().keys() {
            assert!(
                body.contains(&format!("| `{key}` |")),
                "no description of {key}"
            );
        }
    }
    for needle in [
        "| stories | 3 |",
        "| records (candidates) | 30 |",
        "| rounds | 9 |",
        "| rounds with one choice | 6 |",
        "| rounds without a choice | 2 |",
        "| rounds with several choices (no pairs) | 1 |",
        "| longest story (steps) | 3 |",
        "| chosen candidates | 8 |",
        "| preference pairs | 14 |",
        "| pairs skipped: identical texts | 1 |",
        "| human | human | 6 |",
        "| longest | picker | 1 |",
        "| shortest | picker | 1 |",
        "| `records` | `records.jsonl` | 30 |",
        "| `preferences` | `preferences.jsonl` | 14 |",
        "| bloom-560m | safetensors | f32 |",
        "| bloom-560m-q4_0.gguf | gguf | q4_0 |",
        "| 2 | 4 | 15 | 4 |",
        "Over the rounds with one choice: 6 chosen and 15 rejected candidates",
    ] {
        assert!(body.contains(needle), "card lacks {needle:?}:\n{body}");
    }
    // Chosen vs rejected means, checked against a direct computation.
    let mean_temperature = |chosen: bool| {
        let ids: BTreeSet<&str> = pairs
            .iter()
            .map(|p| {
                if chosen {
                    &p.chosen_record_id
                } else {
                    &p.rejected_record_id
                }
                .as_str()
            })
            .collect();
        let values: Vec<f64> = records
            .iter()
            .filter(|r| ids.contains(r.record_id.as_str()))
            .map(|r| f64::from(r.params.temperature))
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let row = body
        .lines()
        .find(|l| l.starts_with("| temperature |"))
        .unwrap();
    assert!(
        row.contains(&format!("| {:.3} ± ", mean_temperature(true))),
        "{row}"
    );
    // The identical candidate (story 2, step 1) is rejected but in no pair; it has candidate
    // 2's temperature (1.05), so include it by hand.
    let mut rejected: Vec<f64> = records
        .iter()
        .filter(|r| !r.chosen)
        .filter(|r| pairs.iter().any(|p| p.rejected_record_id == r.record_id))
        .map(|r| f64::from(r.params.temperature))
        .collect();
    rejected.push(f64::from(records[13].params.temperature));
    let mean = rejected.iter().sum::<f64>() / rejected.len() as f64;
    assert!(
        row.ends_with(&format!("| {mean:.3} ± {:.3} |", {
            let var =
                rejected.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rejected.len() as f64;
            var.sqrt()
        })),
        "{row}"
    );
    assert!(body.contains("| eos |"));
}

#[test]
fn the_card_lists_the_preferences_config_only_when_there_are_pairs() {
    let unchosen: Vec<CandidateRecord> = sample().into_iter().filter(|r| !r.chosen).collect();
    let files = DatasetFiles::build(&unchosen);
    assert_eq!((files.pairs, files.preferences_jsonl.as_str()), (0, ""));
    assert!(files.card.contains("- config_name: records\n"));
    assert!(!files.card.contains("- config_name: preferences"));
    assert!(files
        .card
        .contains("(none yet: no round has exactly one choice"));
}

#[test]
fn dataset_files_are_the_three_exports() {
    let records = sample();
    let files = DatasetFiles::build(&records);
    let names: Vec<&str> = files.files().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [RECORDS_FILE, PREFERENCES_FILE, UNPAIRED_FILE, CARD_FILE]
    );
    assert_eq!(files.records_jsonl, records_jsonl(&records));
    assert_eq!(files.pairs, PAIRS);
    assert_eq!(files.preferences_jsonl.lines().count(), PAIRS);
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

fn storywriter(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "storywriter {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn summary(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn cli_export_writes_the_dataset_and_reports_bad_lines() {
    let dir = scratch("export");
    let records = sample();
    // Two logs that overlap; the second has a bad line 3 and the chosen copy of a record the
    // first log holds unchosen.
    let mut unchosen = records[22].clone();
    assert!(unchosen.chosen);
    unchosen.chosen = false;
    unchosen.chosen_by = None;
    unchosen.chosen_at = None;
    let mut first = records[..20].to_vec();
    first.push(unchosen);
    let first_log = dir.join("first.jsonl");
    std::fs::write(&first_log, records_jsonl(&first)).unwrap();
    let second = records_jsonl(&records[10..]);
    let mut second_lines: Vec<&str> = second.lines().collect();
    second_lines.insert(2, "{\"schema\": \"storywriter.record/1\"");
    let second_log = dir.join("second.jsonl");
    std::fs::write(&second_log, second_lines.join("\n")).unwrap();

    let out_dir = dir.join("dataset");
    let output = storywriter(&[
        "export",
        first_log.to_str().unwrap(),
        second_log.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3: EOF while parsing", second_log.display())),
        "{stderr}"
    );
    let summary = summary(&output);
    assert_eq!(summary["records"], RECORDS);
    assert_eq!(summary["preference_pairs"], PAIRS);
    assert_eq!(summary["bad_lines"], 1);
    assert_eq!(summary["updated"], 1);
    assert_eq!(summary["duplicates"], 10);

    let exported = std::fs::read_to_string(out_dir.join(RECORDS_FILE)).unwrap();
    let (parsed, errors) = parse_records(&exported, RECORDS_FILE);
    assert!(errors.is_empty());
    assert_eq!(parsed.len(), RECORDS);
    assert_eq!(by_id(&parsed), by_id(&records));
    assert_eq!(
        std::fs::read_to_string(out_dir.join(PREFERENCES_FILE)).unwrap(),
        preferences_jsonl(&preference_pairs(&records))
    );
    let card = std::fs::read_to_string(out_dir.join(CARD_FILE)).unwrap();
    assert_eq!(card, DatasetFiles::build(&records).card);
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_import_merges_into_a_store_and_keeps_its_bad_lines() {
    let dir = scratch("import");
    let records = sample();
    let store = dir.join("store.jsonl");
    let export = dir.join("export.jsonl");
    std::fs::write(&export, records_jsonl(&records)).unwrap();

    // Into a missing store: created with every record.
    let output = storywriter(&[
        "import",
        export.to_str().unwrap(),
        "--into",
        store.to_str().unwrap(),
    ]);
    assert_eq!(summary(&output)["added"], RECORDS);
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        records_jsonl(&records)
    );

    // A store holding half the records, a bad line and a blank line, and with record 9
    // unchosen where the log has it chosen.
    let mut chosen = records[9].clone();
    chosen.chosen = true;
    chosen.chosen_by = Some("human".into());
    chosen.chosen_at = Some("2026-11-30T10:00:00.000Z".into());
    let mut log = records.clone();
    log[9] = chosen.clone();
    std::fs::write(&export, records_jsonl(&log)).unwrap();
    let half: Vec<CandidateRecord> = records.iter().skip(1).step_by(2).cloned().collect();
    let half_jsonl = records_jsonl(&half);
    let mut store_lines: Vec<&str> = half_jsonl.lines().collect();
    let bad = "{\"schema\": \"storywriter.record/1\", \"record_id\": \"broken";
    store_lines.insert(3, bad);
    store_lines.insert(5, "");
    std::fs::write(&store, store_lines.join("\n")).unwrap();

    let output = storywriter(&[
        "import",
        export.to_str().unwrap(),
        "--into",
        store.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4: ", store.display())) && stderr.contains("kept"),
        "{stderr}"
    );
    let summary_json = summary(&output);
    assert_eq!(summary_json["added"], RECORDS / 2);
    assert_eq!(summary_json["duplicates"], RECORDS / 2 - 1);
    assert_eq!(summary_json["updated"], 1);
    assert_eq!(summary_json["store_bad_lines_kept"], 1);
    assert_eq!(summary_json["records"], RECORDS);

    let merged = std::fs::read_to_string(&store).unwrap();
    let merged_lines: Vec<&str> = merged.lines().collect();
    assert_eq!(merged_lines[3], bad, "the bad line is kept where it was");
    assert_eq!(merged_lines[5], "", "so is the blank line");
    let (parsed, errors) = parse_records(&merged, "store");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        by_id(&parsed),
        by_id(&log),
        "nothing lost, nothing duplicated"
    );
    assert_eq!(parsed.len(), RECORDS);
    // Record 9 is updated in place: where the store held it.
    let held_at = |records: &[CandidateRecord]| {
        records
            .iter()
            .position(|r| r.record_id == chosen.record_id)
            .unwrap()
    };
    let (in_store, _) = parse_records(&half_jsonl, "store");
    assert_eq!(held_at(&parsed), held_at(&in_store));
    assert_eq!(parsed[held_at(&parsed)], chosen);

    // Importing again changes nothing, not a byte.
    let output = storywriter(&[
        "import",
        export.to_str().unwrap(),
        "--into",
        store.to_str().unwrap(),
    ]);
    assert_eq!(summary(&output)["added"], 0);
    assert_eq!(summary(&output)["duplicates"], RECORDS);
    assert_eq!(std::fs::read_to_string(&store).unwrap(), merged);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_import_of_a_missing_log_fails_without_touching_the_store() {
    let dir = scratch("missing");
    let store = dir.join("store.jsonl");
    std::fs::write(&store, records_jsonl(&sample())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(["import", "/nonexistent/log.jsonl", "--into"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/log.jsonl"));
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        records_jsonl(&sample())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
