//! Foreign inputs (mongoexport), repeated copies, bad records and bad files, and the CLI's output.

use super::*;

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
