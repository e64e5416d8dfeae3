//! Input nobody types on purpose, on the tiny fixture model: an opening of 50,000 characters
//! (far past the context window), control and bidi characters, and emoji whose bytes the
//! byte-level tokenizer splits across tokens. A round must work, and its records must hold the
//! story's text exactly and the ids the model saw (the story's last ones).

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::Device;
use storywriter::generate::CachePool;
use storywriter::loader::native;
use storywriter::session::write_round;
use storywriter::story::{PlannedCandidate, Story};

use crate::common::fixed_candidate;

/// Words, a tab, a bell, right-to-left marks and overrides, and emoji (a family joined by
/// zero-width joiners, a crab), repeated to `chars` characters.
fn odd_text(chars: usize) -> String {
    let piece = "Once upon a time\t\u{0007}the keeper \u{202E}wrote\u{202C} \u{200F}שלום\u{200E} \
                 👩\u{200D}👩\u{200D}👧 saw a 🦀 and said \"hi\"\r\n";
    piece.chars().cycle().take(chars).collect()
}

#[test]
fn an_opening_of_50000_odd_characters_writes_a_round_and_keeps_it_exact() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    let model = native::load(&path, &Device::Cpu).unwrap();
    let text = odd_text(50_000);
    let ids = model.tokenizer.encode(&text).unwrap();
    assert!(ids.len() > model.model.config().context_length);
    assert_eq!(
        model.tokenizer.decode(&ids).unwrap(),
        text,
        "ids round-trip"
    );
    let mut story = Story::new(&text);
    let planned: Vec<PlannedCandidate> = (0..3).map(|i| fixed_candidate(5, 40 + i)).collect();
    let records = write_round(
        &mut story,
        &model,
        &mut CachePool::default(),
        &planned,
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(record.input_text, text);
        // The ids the model saw: the story's last ids that fit the window with the new ones.
        let context = model.model.config().context_length;
        assert!(!record.input_ids.is_empty() && record.input_ids.len() <= context);
        assert!(ids.ends_with(&record.input_ids.to_vec()));
        assert_eq!(record.output_ids.len(), record.logprobs.len());
        assert!(record.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
        // The text shown is what the ids decode to (a character split across tokens is only
        // shown once complete).
        let decoded = model.tokenizer.decode(&record.output_ids).unwrap();
        assert!(decoded.starts_with(record.output_text.trim_end_matches('\u{FFFD}')));
    }
}
