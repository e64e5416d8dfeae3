//! `storywriter.record/2`: `/1` records still read, events merge as later versions, and the
//! unpaired export labels every candidate of a decided round.

use std::path::Path;

use storywriter::data::dataset::{merge_records, parse_records, MergeOutcome, Merger};
use storywriter::data::unpaired::unpaired_examples;
use storywriter::records::{CandidateRecord, RECORD_SCHEMA_V1};

fn sample() -> Vec<CandidateRecord> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records_sample.jsonl");
    let (records, errors) = parse_records(&std::fs::read_to_string(path).unwrap(), "sample");
    assert!(errors.is_empty(), "{errors:?}");
    records
}

#[test]
fn version_1_records_still_read_without_the_new_fields() {
    let mut value = serde_json::to_value(&sample()[0]).unwrap();
    let object = value.as_object_mut().unwrap();
    object.insert("schema".into(), RECORD_SCHEMA_V1.into());
    for field in [
        "display_position",
        "mix_slot",
        "order_seed",
        "log_propensity",
        "decision_ms",
        "rejected_all_at",
        "edited_at",
        "edited_text",
    ] {
        object.remove(field);
    }
    let (parsed, errors) = parse_records(&value.to_string(), "old.jsonl");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(parsed[0].schema, RECORD_SCHEMA_V1);
    assert_eq!(
        (parsed[0].display_position, parsed[0].log_propensity),
        (None, None)
    );
}

#[test]
fn events_are_later_versions_of_a_record() {
    let base = sample().into_iter().find(|r| !r.chosen).unwrap();
    let rejected = CandidateRecord {
        rejected_all_at: Some("2026-12-03T10:00:00.000Z".into()),
        ..base.clone()
    };
    let mut merger = Merger::new(vec![base.clone()]);
    assert_eq!(merger.add(rejected.clone()), MergeOutcome::Updated);
    assert_eq!(merger.add(base.clone()), MergeOutcome::Duplicate);
    let report = merger.finish();
    assert_eq!(report.records, vec![rejected.clone()]);

    // A pick with its edit supersedes the plain pick; a pick and a rejection of the same record
    // contradict each other.
    let picked = CandidateRecord {
        chosen: true,
        chosen_by: Some("human".into()),
        chosen_at: Some("2026-12-03T10:00:02.000Z".into()),
        decision_ms: Some(2000),
        ..base.clone()
    };
    let edited = CandidateRecord {
        edited_at: Some("2026-12-03T10:01:00.000Z".into()),
        edited_text: Some("new text".into()),
        ..picked.clone()
    };
    let report = merge_records(vec![picked.clone()], [edited.clone()]);
    assert_eq!((report.records, report.updated), (vec![edited], vec![0]));
    let report = merge_records(vec![picked], [rejected]);
    assert_eq!(report.conflicts.len(), 1);
}

#[test]
fn unpaired_examples_label_and_rank_each_candidate() {
    let records = sample();
    let examples = unpaired_examples(&records);
    assert!(!examples.is_empty());
    for example in &examples {
        let record = records
            .iter()
            .find(|r| r.record_id == example.record_id)
            .unwrap();
        assert_eq!(example.label, record.chosen);
        assert_eq!(example.completion, record.output_text);
        if let Some(rank) = example.rank {
            assert_eq!(rank == 0, record.chosen);
        }
    }
    assert!(examples.iter().any(|e| e.rejected_all && !e.label));
    // Every round with one choice has exactly one rank 0.
    let chosen = examples.iter().filter(|e| e.rank == Some(0)).count();
    assert_eq!(chosen, examples.iter().filter(|e| e.label).count());
}
