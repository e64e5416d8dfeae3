//! BLOOM's final hidden state taken while generating: the mean a candidate carries equals a
//! full forward's, records keep it compactly (and read without it), the page's stored form
//! keeps it, and exports leave it out unless asked.

use std::ops::ControlFlow;
use std::process::Command;

use candle_core::{Device, Tensor};
use storywriter::dataset::{parse_records, record_json_line, DatasetFiles};
use storywriter::generate::{generate, CachePool, CandidateSpec};
use storywriter::records::CandidateRecord;
use storywriter::sampling::SamplingParams;
use storywriter::session::write_round;
use storywriter::story::Story;

use crate::picker::tiny;

fn specs() -> Vec<CandidateSpec> {
    (0..3)
        .map(|i| CandidateSpec {
            params: SamplingParams {
                temperature: 0.7 + 0.2 * i as f32,
                max_new_tokens: 8,
                ..SamplingParams::default()
            },
            seed: 11 + i,
        })
        .collect()
}

#[test]
fn the_mean_equals_the_mean_of_a_full_forward() {
    let model = tiny();
    let prompt = model
        .tokenizer
        .encode("Once upon a time there was")
        .unwrap();
    let generation = generate(&model.model, &model.tokenizer, &prompt, &specs(), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    for candidate in &generation.candidates {
        let n = candidate.ids.len();
        assert!(n > 1 && candidate.hidden_mean.len() == 256);
        // The states that produced the tokens: the prompt's last position's, then each
        // generated token's but the last's.
        let ids = [prompt.as_slice(), &candidate.ids[..n - 1]].concat();
        let positions: Vec<usize> = (prompt.len() - 1..ids.len()).collect();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut cache = model.model.new_cache();
        // (1, n, hidden) → (hidden)
        let expected: Vec<f32> = model
            .model
            .final_hidden(&input, &mut cache, &positions)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .mean(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = expected
            .iter()
            .zip(&candidate.hidden_mean)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "hidden mean differs by {diff}");
    }
}

/// Two rounds written by the tiny model: six records with hidden states.
fn records() -> Vec<CandidateRecord> {
    let model = tiny();
    let planned = crate::kv_reuse::plan(5);
    let mut story = Story::new("The lighthouse keeper");
    let mut pool = CachePool::default();
    for _ in 0..2 {
        let round = write_round(&mut story, model, &mut pool, &planned, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        story.choose(&round[0].record_id, "human").unwrap();
    }
    story.records
}

#[test]
fn records_carry_it_compactly_and_old_records_still_read() {
    let records = records();
    for record in &records {
        assert_eq!(record.hidden_mean.as_ref().unwrap().width(), 256);
        let line = record_json_line(record);
        let (parsed, errors) = parse_records(&line, "log.jsonl");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(&parsed[0], record);
        // 256 f16 values: 684 base64 characters.
        let bare = record_json_line(&CandidateRecord {
            hidden_mean: None,
            rerolled_from: None,
            ..record.clone()
        });
        assert_eq!(line.len() - bare.len(), r#","hidden_mean":"""#.len() + 684);

        let mut old: serde_json::Value = serde_json::from_str(&line).unwrap();
        old.as_object_mut().unwrap().remove("hidden_mean");
        let (parsed, errors) = parse_records(&old.to_string(), "old.jsonl");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed[0].hidden_mean, None);
    }
    // The page's stored form keeps it.
    let stored = storywriter::data::stored::compact(&records);
    let json = serde_json::to_string(&stored).unwrap();
    let (expanded, errors) =
        storywriter::data::stored::expand(serde_json::from_str(&json).unwrap());
    assert!(errors.is_empty());
    assert_eq!(expanded, records);
}

#[test]
fn exports_leave_it_out_unless_asked() {
    let records = records();
    let plain = DatasetFiles::build(&records);
    assert!(!plain.records_jsonl.contains("hidden_mean"));
    assert!(
        plain.card.contains("--with-hidden-states"),
        "{}",
        plain.card
    );
    let with = DatasetFiles::build_with(&records, true);
    assert_eq!(
        with.records_jsonl.matches("\"hidden_mean\":").count(),
        records.len()
    );
    assert!(with.card.contains("base64"));
    let (parsed, errors) = parse_records(&with.records_jsonl, "records.jsonl");
    assert!(errors.is_empty());
    assert!(parsed.iter().all(|r| records.contains(r)));

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let text: String = records.iter().map(record_json_line).collect();
    std::fs::write(&log, text).unwrap();
    for (flag, expected) in [(None, 0), (Some("--with-hidden-states"), records.len())] {
        let out = dir.path().join("out");
        let mut command = Command::new(env!("CARGO_BIN_EXE_storywriter"));
        command
            .arg("export")
            .arg(&log)
            .arg("--output-dir")
            .arg(&out);
        command.args(flag);
        let status = command.output().unwrap();
        assert!(status.status.success(), "{status:?}");
        let exported = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
        assert_eq!(exported.matches("\"hidden_mean\":").count(), expected);
    }
}
