//! `storywriter stats` and `storywriter::stats`: tables from generated logs against an
//! independent computation, shrinkage by hand, mongoexport input, bad records and bad files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use storywriter::generate::FinishReason;
use storywriter::loader::ModelIdentity;
use storywriter::params::{ParamSummary, StepParams, StepTable, BUNDLED_VOCAB_SIZE};
use storywriter::records::{CandidateRecord, RECORD_SCHEMA};
use storywriter::sampling::SamplingParams;
use storywriter::stats::{
    SelectionRecord, StatsBuilder, StatsOptions, EXACT_DISTINCT_VALUES,
    PERCENTILE_RELATIVE_ACCURACY,
};

mod inputs;
mod tables;

const RECORDS: usize = 10_000;

/// Parameter values on decimal grids, so that the JSON text of the `f32` record fields reads
/// back as exactly these `f64`s (`k / 1000` in `f32`, printed shortest, is `"0.k"`).
#[derive(Clone, Copy)]
struct Drawn {
    values: [f64; 6],
    params_f32: (f32, usize, f32, f32, f32, usize),
}

fn draw(rng: &mut ChaCha8Rng, step: u32) -> Drawn {
    // Temperature on a 1/1000 grid (up to 1,800 distinct values: the sketch path);
    // the others with few distinct values (the exact path).
    let t: u32 = rng.random_range(200..2000) + 10 * step.min(40);
    let top_k = [0usize, 20, 40, 50, 100][rng.random_range(0..5)];
    let top_p: u32 = rng.random_range(50..=100);
    let typical: u32 = if rng.random_bool(0.8) {
        100
    } else {
        rng.random_range(80..100)
    };
    let rep: u32 = [100u32, 105, 110, 120][rng.random_range(0..4)];
    let length = rng.random_range(16..=128usize);
    Drawn {
        values: [
            f64::from(t) / 1000.0,
            top_k as f64,
            f64::from(top_p) / 100.0,
            f64::from(typical) / 100.0,
            f64::from(rep) / 100.0,
            length as f64,
        ],
        params_f32: (
            t as f32 / 1000.0,
            top_k,
            top_p as f32 / 100.0,
            typical as f32 / 100.0,
            rep as f32 / 100.0,
            length,
        ),
    }
}

/// One generated record with the values the table should see.
struct Generated {
    record: CandidateRecord,
    values: [f64; 6],
}

/// `RECORDS` records of stories of 1–40 steps (short ones more likely), three candidates a
/// step, one chosen except at about one step in ten.
fn generate_records(seed: u64) -> Vec<Generated> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(RECORDS);
    let mut story = 0u32;
    'stories: loop {
        story += 1;
        let length = 1 + (rng.random_range(0.0f64..1.0).powi(2) * 40.0) as u32;
        let mut parent: Option<String> = None;
        for step in 1..=length {
            let chosen = if rng.random_bool(0.9) {
                Some(rng.random_range(1..=3u32))
            } else {
                None
            };
            for candidate in 1..=3u32 {
                if out.len() == RECORDS {
                    break 'stories;
                }
                let drawn = draw(&mut rng, step);
                let (temperature, top_k, top_p, typical_p, repetition_penalty, max_new_tokens) =
                    drawn.params_f32;
                let record_id = format!("{:032x}", out.len() + 1);
                let is_chosen = chosen == Some(candidate);
                let record = CandidateRecord {
                    schema: RECORD_SCHEMA.to_string(),
                    record_id: record_id.clone(),
                    story_id: format!("story-{story}"),
                    step,
                    candidate,
                    parent_record_id: parent.clone(),
                    input_text: "Once upon a time".into(),
                    input_ids: vec![46687, 29315, 267, 3509].into(),
                    params: SamplingParams {
                        temperature,
                        top_k,
                        top_p,
                        typical_p,
                        repetition_penalty,
                        max_new_tokens,
                        ..SamplingParams::default()
                    },
                    policy: "step-sample".to_string(),
                    param_table: Some("bundled table".to_string()),
                    seed: rng.random_range(0..1u64 << 53),
                    output_text: " there was".to_string(),
                    output_ids: vec![2782, 1620],
                    logprobs: vec![-1.25, -0.5],
                    finish_reason: FinishReason::Length,
                    chosen: is_chosen,
                    chosen_by: is_chosen.then(|| "human".to_string()),
                    created_at: "2025-01-02T03:04:05.678Z".to_string(),
                    chosen_at: is_chosen.then(|| "2025-01-02T03:05:00.000Z".to_string()),
                    model: ModelIdentity {
                        name: "bloom-560m-q4_0.gguf".to_string(),
                        format: "gguf".to_string(),
                        quantization: "q4_0".to_string(),
                        content_hash: "ab".repeat(32),
                    },
                    app_version: "storywriter 0.1.0".to_string(),
                    display_position: None,
                    mix_slot: None,
                    order_seed: None,
                    log_propensity: None,
                    decision_ms: None,
                    rejected_all_at: None,
                    edited_at: None,
                    edited_text: None,
                    hidden_mean: None,
                    rerolled_from: None,
                };
                if is_chosen {
                    parent = Some(record_id);
                }
                out.push(Generated {
                    record,
                    values: drawn.values,
                });
            }
        }
    }
    out
}

fn write_jsonl(path: &Path, lines: impl IntoIterator<Item = String>) {
    let text: String = lines.into_iter().map(|line| line + "\n").collect();
    std::fs::write(path, text).unwrap();
}

fn write_native_log(dir: &Path, records: &[Generated]) -> PathBuf {
    let path = dir.join("records.jsonl");
    write_jsonl(
        &path,
        records
            .iter()
            .map(|g| serde_json::to_string(&g.record).unwrap()),
    );
    path
}

/// Runs `storywriter stats` on `logs` with extra arguments.
fn run_cli(logs: &[&Path], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .arg("stats")
        .args(logs)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs the CLI, writing the table to `dir/out.json`; returns the table and stderr.
fn cli_table(dir: &Path, logs: &[&Path], extra: &[&str]) -> (StepTable, String) {
    let out = dir.join("out.json");
    let output = run_cli(
        logs,
        &[&["--output", out.to_str().unwrap()], extra].concat(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "stats failed: {stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let (table, warnings) = StepTable::from_json(&text, "out.json", BUNDLED_VOCAB_SIZE).unwrap();
    assert_eq!(warnings, [], "the table's own reader changed something");
    (table, stderr)
}

fn summaries(row: &StepParams) -> [&ParamSummary; 6] {
    [
        &row.temperature,
        &row.top_k,
        &row.top_p,
        &row.typical_p,
        &row.repetition_penalty,
        &row.max_new_tokens,
    ]
}

/// What a row must be, computed by sorting.
struct Expected {
    count: u64,
    mean: [f64; 6],
    std: [f64; 6],
    /// p10, p50, p90 of each parameter, exact.
    percentiles: [[f64; 3]; 6],
    distinct: [usize; 6],
}

fn expected(rows: &[[f64; 6]]) -> Expected {
    let n = rows.len();
    let mut e = Expected {
        count: n as u64,
        mean: [0.0; 6],
        std: [0.0; 6],
        percentiles: [[0.0; 3]; 6],
        distinct: [0; 6],
    };
    for i in 0..6 {
        let mut values: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        values.sort_by(f64::total_cmp);
        e.mean[i] = mean;
        e.std[i] = var.sqrt();
        e.percentiles[i] = [0.1, 0.5, 0.9].map(|q| values[(q * (n - 1) as f64) as usize]);
        values.dedup();
        e.distinct[i] = values.len();
    }
    e
}

fn close(actual: f64, wanted: f64, relative: f64) -> bool {
    (actual - wanted).abs() <= relative * wanted.abs().max(1.0)
}

/// Checks a row against the sorted computation: count exact, mean and std to 1e-9,
/// percentiles exact with few distinct values, within the sketch's accuracy otherwise.
/// Returns how many percentiles went through the sketch.
fn check_row(what: &str, row: &StepParams, e: &Expected) -> usize {
    assert_eq!(row.count, e.count, "{what}: count");
    let mut sketched = 0;
    for (i, s) in summaries(row).into_iter().enumerate() {
        assert!(
            close(s.mean, e.mean[i], 1e-9),
            "{what} param {i}: mean {} vs {}",
            s.mean,
            e.mean[i]
        );
        assert!(
            close(s.std, e.std[i], 1e-9),
            "{what} param {i}: std {} vs {}",
            s.std,
            e.std[i]
        );
        let tolerance = if e.distinct[i] <= EXACT_DISTINCT_VALUES {
            1e-12
        } else {
            sketched += 1;
            PERCENTILE_RELATIVE_ACCURACY + 1e-12
        };
        for (got, want) in [s.p10, s.p50, s.p90].into_iter().zip(e.percentiles[i]) {
            assert!(
                (got - want).abs() <= tolerance * want.abs() + 1e-12,
                "{what} param {i}: percentile {got} vs {want} ({} distinct)",
                e.distinct[i]
            );
        }
    }
    sketched
}

/// The table the library builds from the log's lines.
fn library_table(path: &Path, options: StatsOptions) -> StepTable {
    let mut builder = StatsBuilder::new(options).unwrap();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        builder
            .add_json(&serde_json::from_str::<Value>(line).unwrap())
            .unwrap();
    }
    builder.finish("library").unwrap()
}

/// Equal but for the creation time, the description, and the last bits of the numbers (the
/// CLI's table went through JSON text, and serde_json reads 17-digit numbers to within an ulp).
fn same_table(a: &StepTable, b: &StepTable) {
    let strip = |t: &StepTable| {
        let mut source = t.source.clone();
        source.created.clear();
        source.description.clear();
        source
    };
    assert_eq!(strip(a), strip(b));
    assert_eq!(a.steps.len(), b.steps.len());
    for (x, y) in std::iter::once((&a.global, &b.global)).chain(a.steps.iter().zip(&b.steps)) {
        assert_eq!((x.step, x.count), (y.step, y.count));
        for (s, t) in summaries(x).into_iter().zip(summaries(y)) {
            let pairs = [
                (s.mean, t.mean),
                (s.std, t.std),
                (s.p10, t.p10),
                (s.p50, t.p50),
                (s.p90, t.p90),
            ];
            for (u, v) in pairs {
                assert!(close(u, v, 1e-14), "step {}: {s:?} vs {t:?}", x.step);
            }
        }
    }
}

fn record(story: &str, step: u32, chosen: bool, temperature: f64) -> Value {
    json!({"story_id": story, "step": step, "chosen": chosen,
           "params": {"temperature": temperature}})
}
