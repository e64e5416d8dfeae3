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
                    input_text: "Once upon a time".to_string(),
                    input_ids: vec![46687, 29315, 267, 3509],
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

#[test]
fn generated_log_matches_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(7);
    let log = write_native_log(dir.path(), &records);
    let max_steps = 30;
    let (table, stderr) = cli_table(
        dir.path(),
        &[&log],
        &[
            "--prior-strength",
            "0",
            "--max-steps",
            &max_steps.to_string(),
        ],
    );
    assert!(stderr.contains("10000 records"), "{stderr}");

    let chosen: Vec<&Generated> = records.iter().filter(|g| g.record.chosen).collect();
    let stories: HashSet<&str> = records.iter().map(|g| g.record.story_id.as_str()).collect();
    assert_eq!(table.source.kind, "selection-logs");
    assert_eq!(table.source.records, RECORDS as u64);
    assert_eq!(table.source.chosen, chosen.len() as u64);
    assert_eq!(table.source.stories, stories.len() as u64);
    assert!(table.source.description.contains("records.jsonl"));
    assert!(table.source.generator.starts_with("storywriter "));
    assert!(
        table.source.created.ends_with('Z'),
        "{}",
        table.source.created
    );

    let all: Vec<[f64; 6]> = chosen.iter().map(|g| g.values).collect();
    let mut sketched = check_row("global", &table.global, &expected(&all));
    let mut by_step: BTreeMap<u32, Vec<[f64; 6]>> = BTreeMap::new();
    for g in &chosen {
        by_step.entry(g.record.step).or_default().push(g.values);
    }
    assert!(
        by_step.keys().any(|&s| s > max_steps),
        "the log should reach past --max-steps"
    );
    by_step.retain(|&step, _| step <= max_steps);
    let steps: Vec<u32> = table.steps.iter().map(|r| r.step).collect();
    assert_eq!(steps, by_step.keys().copied().collect::<Vec<_>>());
    for row in &table.steps {
        sketched += check_row(
            &format!("step {}", row.step),
            row,
            &expected(&by_step[&row.step]),
        );
    }
    assert!(sketched > 0, "no row went through the sketch");

    // The library on the same log gives the same table.
    let options = StatsOptions {
        prior_strength: 0.0,
        max_steps,
    };
    same_table(&library_table(&log, options), &table);
}

/// The shrinkage formula, written out again.
fn shrunk(own: &ParamSummary, global: &ParamSummary, n: f64, k: f64) -> [f64; 5] {
    let w = n / (n + k);
    let var = w * own.std.powi(2)
        + (1.0 - w) * global.std.powi(2)
        + w * (1.0 - w) * (own.mean - global.mean).powi(2);
    [
        w * own.mean + (1.0 - w) * global.mean,
        var.sqrt(),
        w * own.p10 + (1.0 - w) * global.p10,
        w * own.p50 + (1.0 - w) * global.p50,
        w * own.p90 + (1.0 - w) * global.p90,
    ]
}

#[test]
fn default_prior_strength_shrinks_every_step_toward_global() {
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(11);
    let log = write_native_log(dir.path(), &records);
    let (raw, _) = cli_table(dir.path(), &[&log], &["--prior-strength", "0"]);
    let (table, _) = cli_table(dir.path(), &[&log], &[]);
    assert!(
        table.source.shrinkage.contains("k = 20"),
        "{}",
        table.source.shrinkage
    );
    assert_eq!(table.global, raw.global);
    assert_eq!(table.steps.len(), raw.steps.len());
    let mut moved = 0;
    for (row, own) in table.steps.iter().zip(&raw.steps) {
        assert_eq!((row.step, row.count), (own.step, own.count));
        let pairs = summaries(row)
            .into_iter()
            .zip(summaries(own))
            .zip(summaries(&raw.global));
        for ((s, o), g) in pairs {
            let want = shrunk(o, g, own.count as f64, 20.0);
            let got = [s.mean, s.std, s.p10, s.p50, s.p90];
            for (a, b) in got.iter().zip(want) {
                assert!(
                    close(*a, b, 1e-12),
                    "step {}: {got:?} vs {want:?}",
                    row.step
                );
            }
            moved += usize::from(s != o);
        }
    }
    assert!(moved > 0);
}

fn record(story: &str, step: u32, chosen: bool, temperature: f64) -> Value {
    json!({"story_id": story, "step": step, "chosen": chosen,
           "params": {"temperature": temperature}})
}

#[test]
fn shrinkage_by_hand() {
    // Step 1: temperatures 1 and 3 (n = 2); step 2: six times 4 (n = 6); k = 2.
    // Global: n = 8, mean 3.5, variance 106/8 − 3.5² = 1; p10, p50, p90 = 1, 4, 4.
    let mut builder = StatsBuilder::new(StatsOptions {
        prior_strength: 2.0,
        max_steps: 10,
    })
    .unwrap();
    let mut values = vec![record("a", 1, true, 1.0), record("b", 1, true, 3.0)];
    values.extend((0..6).map(|i| record(&format!("s{i}"), 2, true, 4.0)));
    values.push(record("a", 3, false, 9.0));
    for v in &values {
        builder.add_json(v).unwrap();
    }
    let table = builder.finish("by hand").unwrap();
    assert_eq!((table.source.records, table.source.chosen), (9, 8));
    assert_eq!(table.source.stories, 8);
    let check = |s: &ParamSummary, want: [f64; 5]| {
        let got = [s.mean, s.std, s.p10, s.p50, s.p90];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w, 1e-12), "{got:?} vs {want:?}");
        }
    };
    check(&table.global.temperature, [3.5, 1.0, 1.0, 4.0, 4.0]);
    // Step 3 has no chosen candidate: no row.
    assert_eq!(table.steps.len(), 2);
    // Step 1: w = 2/4. mean 2 → 2.75; var ½·1 + ½·1 + ¼·(2 − 3.5)² = 1.5625 → std 1.25;
    // own percentiles 1, 1, 1 → 1, 2.5, 2.5.
    let s1 = &table.steps[0];
    assert_eq!((s1.step, s1.count), (1, 2));
    check(&s1.temperature, [2.75, 1.25, 1.0, 2.5, 2.5]);
    // Step 2: w = 6/8. mean 4 → 3.875; var ¼·1 + (3/16)·0.25 = 0.296875; percentiles
    // 4 → 3.25, 4, 4.
    let s2 = &table.steps[1];
    assert_eq!((s2.step, s2.count), (2, 6));
    check(&s2.temperature, [3.875, 0.296875f64.sqrt(), 3.25, 4.0, 4.0]);
    // The other parameters are at their defaults everywhere: nothing to shrink.
    assert_eq!(s1.top_k.mean, 50.0);
    assert_eq!(s1.top_k.std, 0.0);
}

/// A native record as `mongoexport` would give it from another app: extended JSON, foreign
/// spellings (varying from record to record), flat or nested under `parameters`, 0/1 flags.
fn mongo_style(g: &Generated, i: usize) -> Value {
    let r = &g.record;
    let story: u64 = r.story_id.trim_start_matches("story-").parse().unwrap();
    let [t, k, p, typ, rep, len] = g.values;
    let mut params = serde_json::Map::new();
    let names = [
        ["temperature", "temp"],
        ["topK", "top_k"],
        ["topP", "topp"],
        ["typical", "typicalP"],
        ["repeat_penalty", "repetitionPenalty"],
        ["max_tokens", "maxNewTokens"],
    ];
    let values = [
        json!({"$numberDouble": t.to_string()}),
        json!({"$numberLong": (k as u64).to_string()}),
        json!(p),
        json!({"$numberDecimal": typ.to_string()}),
        json!(rep.to_string()),
        json!({"$numberInt": (len as u64).to_string()}),
    ];
    for (n, v) in names.iter().zip(values) {
        params.insert(n[i % 2].to_string(), v);
    }
    let created = if i.is_multiple_of(2) {
        json!({"$date": {"$numberLong": "1735787045678"}})
    } else {
        json!({"$date": "2025-01-02T03:04:05.678Z"})
    };
    let mut doc = serde_json::Map::new();
    let fields = [
        ("_id", json!({"$oid": format!("{i:024x}")})),
        (
            ["storyId", "story"][i % 2],
            json!({"$oid": format!("{story:024x}")}),
        ),
        (
            ["stepIndex", "step_number"][i % 2],
            json!({"$numberInt": r.step.to_string()}),
        ),
        (["selected", "is_chosen"][i % 2], json!(u8::from(r.chosen))),
        ("text", json!(r.output_text)),
        ("createdAt", created),
    ];
    doc.extend(fields.map(|(name, value)| (name.to_string(), value)));
    if i.is_multiple_of(3) {
        doc.insert("parameters".to_string(), Value::Object(params));
    } else {
        doc.extend(params);
    }
    Value::Object(doc)
}

#[test]
fn mongoexport_lines_and_array_give_the_native_table() {
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(3);
    let native = write_native_log(dir.path(), &records);
    let (want, _) = cli_table(dir.path(), &[&native], &[]);

    let docs: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, g)| mongo_style(g, i))
        .collect();
    let lines = dir.path().join("export.jsonl");
    write_jsonl(&lines, docs.iter().map(Value::to_string));
    let array = dir.path().join("export.json");
    std::fs::write(&array, serde_json::to_string_pretty(&docs).unwrap()).unwrap();

    for path in [&lines, &array] {
        let (table, stderr) = cli_table(dir.path(), &[path], &[]);
        assert!(stderr.contains("0 bad"), "{}: {stderr}", path.display());
        same_table(&table, &want);
    }
    // And the normaliser alone reads a document as its native record.
    for (i, g) in records.iter().enumerate().take(50) {
        let text = serde_json::to_string(&g.record).unwrap();
        let native = SelectionRecord::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut foreign = SelectionRecord::from_json(&mongo_style(g, i)).unwrap();
        assert_ne!(foreign.story_id, native.story_id);
        foreign.story_id = native.story_id.clone();
        foreign.record_id = native.record_id.clone();
        assert_eq!(foreign, native);
    }
}

#[test]
fn repeated_copies_of_a_record_count_once() {
    // As `storywriter write` logs: every candidate when generated, the picked one again when
    // chosen; plus a log given twice, and a chosen copy that comes before its unchosen one.
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(5);
    let plain = write_native_log(dir.path(), &records[..3000]);
    let (want, _) = cli_table(dir.path(), &[&plain], &[]);

    let line = |g: &Generated, chosen: bool| {
        let mut record = g.record.clone();
        record.chosen = chosen;
        serde_json::to_string(&record).unwrap()
    };
    let mut lines = Vec::new();
    for g in &records[..3000] {
        lines.push(line(g, false));
        if g.record.chosen {
            lines.push(line(g, true));
        }
    }
    let write_log = dir.path().join("write.jsonl");
    write_jsonl(&write_log, lines.clone());
    let reversed = dir.path().join("reversed.jsonl");
    write_jsonl(&reversed, lines.into_iter().rev());
    let chosen = records[..3000].iter().filter(|g| g.record.chosen).count();

    let (table, stderr) = cli_table(dir.path(), &[&write_log], &[]);
    assert!(
        stderr.contains(&format!("{chosen} repeated copies")),
        "{stderr}"
    );
    same_table(&table, &want);
    let (table, stderr) = cli_table(dir.path(), &[&reversed, &write_log, &plain], &[]);
    assert!(
        stderr.contains(&format!("{} repeated copies", 2 * chosen + 6000)),
        "{stderr}"
    );
    same_table(&table, &want);
}

#[test]
fn bad_records_are_reported_with_their_place_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let good = |story: &str, t: f64| record(story, 1, true, t).to_string();
    write_jsonl(
        &log,
        [
            good("a", 0.5),
            good("b", 0.7),
            "{\"story_id\": \"c\", \"step\": 1, oops".to_string(),
            good("d", 0.9),
            json!({"story_id": "e", "step": 1, "chosen": true,
                   "params": {"temperature": {"$numberDouble": "NaN"}}})
            .to_string(),
            String::new(),
            json!({"story_id": "f", "chosen": true}).to_string(),
            good("g", 1.1),
        ],
    );
    let array = dir.path().join("log.json");
    std::fs::write(
        &array,
        format!("[{}, 17, {}]", good("h", 1.3), good("i", 1.5)),
    )
    .unwrap();
    let (table, stderr) = cli_table(dir.path(), &[&log, &array], &["--prior-strength", "0"]);
    for expected in [
        "log.jsonl line 3: not JSON",
        "log.jsonl line 5: `temperature`",
        "log.jsonl line 7: no `step`",
        "log.json element 1: a record must be a JSON object",
        "6 records (6 chosen, 0 repeated copies, 4 bad)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(table.source.records, 6);
    assert_eq!(table.global.count, 6);
    assert!(table.source.description.contains("4 bad records skipped"));
    assert!((table.global.temperature.mean - 1.0).abs() < 1e-12);
}

#[test]
fn a_truncated_array_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.json");
    std::fs::write(&path, format!("[{}, {{\"story", record("a", 2, true, 0.8))).unwrap();
    let (table, stderr) = cli_table(dir.path(), &[&path], &[]);
    assert!(stderr.contains("cut.json element 1"), "{stderr}");
    assert!(
        stderr.contains("the rest of the file is skipped"),
        "{stderr}"
    );
    assert_eq!(table.source.chosen, 1);
    assert_eq!(table.steps[0].step, 2);
}

#[test]
fn a_file_that_is_not_json_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    write_jsonl(&good, [record("a", 1, true, 0.8).to_string()]);
    let csv = dir.path().join("table.csv");
    std::fs::write(&csv, "story,step,chosen\na,1,true\n").unwrap();
    let pretty = dir.path().join("pretty.json");
    std::fs::write(&pretty, "{\n  \"story_id\": \"a\"\n}\n").unwrap();
    for bad in [&csv, &pretty] {
        let output = run_cli(&[&good, bad], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        let name = bad.file_name().unwrap().to_str().unwrap();
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            error.contains(name) && error.contains("not JSON"),
            "{stderr}"
        );
    }
    let missing = dir.path().join("missing.jsonl");
    let output = run_cli(&[&missing], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.jsonl"));
}

#[test]
fn no_chosen_candidate_or_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    write_jsonl(&log, [record("a", 1, false, 0.8).to_string()]);
    let output = run_cli(&[&log], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no chosen candidate"));
    let output = run_cli(&[&log], &["--prior-strength=-1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("prior strength"));
}

#[test]
fn stdout_is_the_default_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    write_jsonl(&log, [record("a", 1, true, 0.8).to_string()]);
    let output = run_cli(&[&log], &[]);
    assert!(output.status.success());
    let table: StepTable = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(table.global.temperature.p50, 0.8);
}
