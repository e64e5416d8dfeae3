//! Preference pairs and the dataset card.

use super::*;

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
                &chosen.input_text.to_string(),
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
    records[15].input_text = records[15].input_text.followed_by(" (edited)");
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
