//! The page's stored form of records: inputs as what they add to the parent's, rebuilt exactly,
//! storage growing linearly with the story, and clear errors for what cannot be rebuilt.

use std::path::Path;

use storywriter::data::dataset::parse_records;
use storywriter::data::stored::{compact, expand, InputDelta, StoredRecord};
use storywriter::records::CandidateRecord;

fn sample() -> Vec<CandidateRecord> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records_sample.jsonl");
    let (records, errors) = parse_records(&std::fs::read_to_string(path).unwrap(), "sample");
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// A story of `steps` rounds of three candidates, each round continuing the first candidate of
/// the one before, its ids cut from the front in chunks of 256 past a 1024-id window, with a hand
/// edit of the text's start at step `edit_at`.
fn long_story(steps: u32, edit_at: u32) -> Vec<CandidateRecord> {
    let template = sample()[0].clone();
    let mut records: Vec<CandidateRecord> = vec![];
    let (mut text, mut ids) = ("Once upon a time".to_string(), vec![1u32, 2, 3, 4]);
    let mut parent: Option<String> = None;
    for step in 1..=steps {
        if step == edit_at {
            text.replace_range(0..4, "Twice");
        }
        let mut chosen = None;
        for candidate in 1..=3u32 {
            let output_ids: Vec<u32> = (0..20)
                .map(|i| 5 + (step * 7 + candidate * 3 + i) % 900)
                .collect();
            let record = CandidateRecord {
                record_id: format!("{step:04}{candidate}"),
                step,
                candidate,
                parent_record_id: parent.clone(),
                input_text: text.clone().into(),
                input_ids: ids.clone().into(),
                output_text: format!(" step {step} candidate {candidate} ünïcödé"),
                output_ids,
                ..template.clone()
            };
            if candidate == 1 {
                chosen = Some(record.clone());
            }
            records.push(record);
        }
        let chosen = chosen.unwrap();
        text.push_str(&chosen.output_text);
        ids.extend(&chosen.output_ids);
        if ids.len() > 1024 {
            let drop = (ids.len() - 1024).div_ceil(256) * 256;
            ids.drain(..drop);
        }
        parent = Some(chosen.record_id);
    }
    records
}

#[test]
fn the_sample_logs_records_come_back_exactly() {
    let records = sample();
    let stored = compact(&records);
    assert!(stored.iter().filter(|s| s.input_delta.is_some()).count() >= 21);
    assert_rebuilds(stored, &records);
}

#[test]
fn a_long_story_is_stored_in_space_linear_in_its_length_and_rebuilt_exactly() {
    let records = long_story(150, 40);
    let full: usize = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len())
        .sum();
    let stored = compact(&records);
    let sizes: Vec<usize> = stored
        .iter()
        .map(|s| serde_json::to_string(s).unwrap().len())
        .collect();
    // The window's cuts are found: past step 1 a delta holds no ids, and no text but at the
    // edit.
    for (record, stored) in records.iter().zip(&stored).skip(3) {
        let delta = stored
            .input_delta
            .as_ref()
            .expect("every later record has a parent");
        assert!(delta.ids_tail.is_empty(), "step {}: {delta:?}", record.step);
        assert_eq!(
            delta.text_tail.is_empty(),
            record.step != 40,
            "step {}",
            record.step
        );
    }
    // A record's stored size does not grow with the step.
    let (early, late) = (
        sizes[6..12].iter().max(),
        sizes[sizes.len() - 6..].iter().max(),
    );
    assert!(
        late.unwrap() <= &(early.unwrap() + 64),
        "{early:?} → {late:?}"
    );
    assert!(sizes.iter().sum::<usize>() * 4 < full);

    // The edit at step 40 keeps only the text before it.
    let edited = &stored[3 * 39];
    assert_eq!(edited.record.step, 40);
    assert_eq!(edited.input_delta.as_ref().unwrap().text_kept, 0);

    // Rebuilt in any order of storage, from JSON, exactly.
    let mut from_json: Vec<StoredRecord> = stored
        .iter()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect();
    from_json.reverse();
    assert_rebuilds(from_json, &records);
}

/// `stored` expands to exactly `records`, without errors.
fn assert_rebuilds(stored: Vec<StoredRecord>, records: &[CandidateRecord]) {
    let (rebuilt, errors) = expand(stored);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rebuilt, records);
}

#[test]
fn records_that_cannot_be_rebuilt_are_named_and_the_others_kept() {
    let records = long_story(4, 0);
    let mut stored = compact(&records);
    // Step 2's chosen record lost: step 3 and 4 cannot be rebuilt.
    stored.remove(3);
    // A corrupt delta on a step-2 sibling.
    stored[3].input_delta = Some(InputDelta {
        text_kept: 10_000,
        ..stored[3].input_delta.clone().unwrap()
    });
    let (rebuilt, errors) = expand(stored);
    let failed: Vec<&str> = errors.iter().map(|e| e.record_id.as_str()).collect();
    assert_eq!(
        failed,
        ["00022", "00031", "00032", "00033", "00041", "00042", "00043"]
    );
    assert!(
        errors[0].to_string().contains("text_kept 10000"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1]
            .to_string()
            .contains("parent record is not stored"),
        "{}",
        errors[1]
    );
    let kept: Vec<&str> = rebuilt.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(kept, ["00011", "00012", "00013", "00023"]);
    assert_eq!(rebuilt[3], records[5]);
}
