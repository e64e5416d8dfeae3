//! `storywriter export` and `import` end to end.

use super::*;

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
