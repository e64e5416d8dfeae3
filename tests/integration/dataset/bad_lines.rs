//! Bad lines reported with their numbers while good ones are kept, and merging.

use super::*;

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
        // Read correctly rounded (serde_json's `float_roundtrip`), 1e39 is beyond f32 at once.
        (19, "field `logprobs[0]`: number out of range"),
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
