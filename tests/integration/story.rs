//! Writing a story on the tiny fixture model: rounds of candidates, choosing, undo and
//! branches, hand edits, and rebuilding the story from its records.

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::Device;
use storywriter::generate::generate;
use storywriter::generate::{CachePool, CandidateSpec};
use storywriter::loader::{native, LoadedModel};
use storywriter::sampling::SamplingParams;
use storywriter::session::write_round;
use storywriter::story::{PlannedCandidate, Story};

fn tiny() -> LoadedModel {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    native::load(&path, &Device::Cpu).unwrap()
}

fn plan(seed: u64) -> Vec<PlannedCandidate> {
    ["step-mean", "step-sample", "manual"]
        .iter()
        .enumerate()
        .map(|(i, policy)| PlannedCandidate {
            params: SamplingParams {
                temperature: 0.7 + 0.2 * i as f32,
                top_k: 20,
                max_new_tokens: 6 + i,
                ..SamplingParams::default()
            },
            policy: policy.to_string(),
            param_table: Some("bundled table".into()),
            seed: seed + i as u64,
            design: None,
        })
        .collect()
}

fn round(story: &mut Story, model: &LoadedModel, seed: u64) -> Vec<String> {
    write_round(story, model, &mut CachePool::default(), &plan(seed), |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
    .into_iter()
    .map(|r| r.record_id)
    .collect()
}

#[test]
fn a_round_records_every_candidate_and_replays_from_its_record() {
    let model = tiny();
    let mut story = Story::new("Once upon a time");
    let ids = round(&mut story, &model, 7);
    assert_eq!(story.pending, ids);
    assert_eq!(story.records.len(), 3);
    for (i, record) in story.records.iter().enumerate() {
        assert_eq!(record.story_id, story.id);
        assert_eq!((record.step, record.candidate), (1, i as u32 + 1));
        assert_eq!(record.parent_record_id, None);
        assert_eq!(record.input_text, "Once upon a time");
        assert_eq!(
            record.input_ids,
            model.tokenizer.encode("Once upon a time").unwrap()
        );
        assert_eq!(record.output_ids.len(), record.logprobs.len());
        assert!(!record.chosen && record.chosen_by.is_none() && record.chosen_at.is_none());
        assert_eq!(record.model, model.identity);
        assert_eq!(record.record_id.len(), 32);
        // The record alone is enough to generate the same tokens again.
        let replay = generate(
            &model.model,
            &model.tokenizer,
            &record.input_ids.to_vec(),
            &[CandidateSpec {
                params: record.params.clone(),
                seed: record.seed,
            }],
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(replay.candidates[0].ids, record.output_ids);
        assert_eq!(replay.candidates[0].text, record.output_text);
    }
    assert_eq!(story.records[2].policy, "manual");
    assert_eq!(
        story.records[0].param_table.as_deref(),
        Some("bundled table")
    );
}

#[test]
fn choosing_undoing_and_branching_keep_every_path() {
    let model = tiny();
    let mut story = Story::new("The dragon");
    let first = round(&mut story, &model, 1);
    let chosen = story.choose(&first[1], "human").unwrap().clone();
    assert!(chosen.chosen);
    assert_eq!(chosen.chosen_by.as_deref(), Some("human"));
    assert_eq!(story.text, format!("The dragon{}", chosen.output_text));
    assert_eq!(story.path, vec![first[1].clone()]);
    assert!(story.pending.is_empty());
    assert!(
        story.choose(&first[0], "human").is_err(),
        "not pending any more"
    );

    let second = round(&mut story, &model, 10);
    assert!(story
        .pending_records()
        .iter()
        .all(|r| r.step == 2 && r.parent_record_id.as_deref() == Some(first[1].as_str())));
    story.choose(&second[0], "human").unwrap();
    let two_steps = story.text.clone();

    // Undo twice: back to the opening, with the first round pending again.
    story.undo().unwrap();
    assert_eq!(story.pending, second);
    story.undo().unwrap();
    assert_eq!(story.text, "The dragon");
    assert_eq!(story.pending, first);
    assert!(story.undo().is_err(), "nothing left to undo");

    // Picking differently starts a branch; the old path's records are all kept.
    story.choose(&first[2], "human").unwrap();
    let third = round(&mut story, &model, 20);
    assert!(story
        .pending_records()
        .iter()
        .all(|r| r.parent_record_id.as_deref() == Some(first[2].as_str())));
    assert_eq!(story.records.len(), 9);
    assert!(story.record(&second[0]).unwrap().chosen);
    assert_ne!(story.text, two_steps);

    // Rebuilt from its records (with stale unchosen versions first, as an append-only log
    // holds them, then the chosen versions), the story is where the writer left it.
    let mut log: Vec<_> = story
        .records
        .iter()
        .map(|r| storywriter::records::CandidateRecord {
            chosen: false,
            chosen_by: None,
            chosen_at: None,
            ..r.clone()
        })
        .collect();
    for id in [&first[1], &second[0], &first[2]] {
        log.push(story.record(id).unwrap().clone()); // in the order of the choices
    }
    let rebuilt = Story::from_records(&story.id, &log).unwrap();
    assert_eq!(rebuilt.path, vec![first[2].clone()]);
    assert_eq!(rebuilt.pending, third);
    assert_eq!(rebuilt.text, story.text);
    assert_eq!(rebuilt.records.len(), 9);
    assert!(Story::from_records("another story", &log).is_none());
}

#[test]
fn undo_after_regenerating_offers_the_round_of_the_undone_choice() {
    let model = tiny();
    let mut story = Story::new("The lighthouse");
    let first = round(&mut story, &model, 1);
    // A round's records share their creation time (milliseconds): keep the rounds apart.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let regenerated = round(&mut story, &model, 2);
    assert_eq!(story.pending, regenerated);
    story.choose(&regenerated[2], "human").unwrap();
    story.undo().unwrap();
    // The round the choice came from waits again, not the first round generated at this step.
    assert_eq!(story.pending, regenerated);
    assert!(story.pending_records()[2].chosen);
    story.choose(&regenerated[0], "human").unwrap();
    assert_eq!(story.records.len(), first.len() + regenerated.len());
}

#[test]
fn a_hand_edit_becomes_the_next_rounds_input() {
    let model = tiny();
    let mut story = Story::new("A ship");
    let first = round(&mut story, &model, 3);
    story.choose(&first[0], "human").unwrap();
    let edited = format!("{} sailed north.", story.text);
    story.edit(&edited);
    let next = round(&mut story, &model, 4);
    let record = story.record(&next[0]).unwrap();
    assert_eq!(record.input_text, edited);
    assert_eq!(record.parent_record_id.as_deref(), Some(first[0].as_str()));
    assert_eq!(record.step, 2);
    story.edit("");
    assert!(write_round(
        &mut story,
        &model,
        &mut CachePool::default(),
        &plan(5),
        |_| ControlFlow::Continue(())
    )
    .is_err());
}
