//! `storywriter write` driven through its stdin on the tiny fixture model: choices, regenerate,
//! undo, own text, the append-only log, and resuming from it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use storywriter::dataset::read_records;
use storywriter::records::CandidateRecord;
use storywriter::story::Story;

/// `storywriter write` on the tiny fixture model, logging to `log`, with `extra` arguments; its
/// stdin, stdout and stderr piped.
pub(crate) fn spawn_write(log: &Path, extra: &[&str]) -> Child {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2");
    Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(["write", "--model"])
        .arg(&model)
        .arg("--log")
        .arg(log)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn write(log: &Path, extra: &[&str], keys: &str) -> String {
    let mut child = spawn_write(log, extra);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(keys.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn log_lines(log: &Path) -> Vec<CandidateRecord> {
    let text = std::fs::read_to_string(log).unwrap();
    let (records, errors) = read_records(text.as_bytes(), "log").unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    records
}

#[test]
fn a_session_logs_every_candidate_and_resumes() {
    let dir = std::env::temp_dir().join(format!("storywriter-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("story.jsonl");
    let _ = std::fs::remove_file(&log);

    // Pick 1; regenerate step 2 and pick 2; undo (the regenerated round, which the pick came
    // from, waits again) and pick its third; add own text; an unknown key shows the help; quit.
    let shown = write(
        &log,
        &["--prompt", "Once upon a time", "--seed", "3"],
        "1\nr\n2\nu\n3\n+ Then <b>it</b> rained.\nx\nq\n",
    );
    assert!(shown.contains("1/2/3… pick"));
    assert!(
        shown.contains("[3] ") && !shown.contains("[4] "),
        "after undo the three candidates of the undone pick's round wait, not every step-2 round"
    );
    let lines = log_lines(&log);
    // Rounds: step 1, step 2, step 2 again, step 3 after each of the two step-2 picks, step 3
    // after the own text (18 records), plus one chosen version per pick (3), the rejected
    // version of the regenerated round's candidates (3) and the edited version of the last
    // pick (1).
    assert_eq!(lines.len(), 25);
    let story = Story::from_records(&lines[0].story_id, &lines).unwrap();
    assert_eq!(story.records.len(), 18);
    let rejected: Vec<_> = lines
        .iter()
        .filter(|r| r.rejected_all_at.is_some())
        .collect();
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().all(|r| r.step == 2 && !r.chosen));
    let edited: Vec<_> = lines.iter().filter(|r| r.edited_at.is_some()).collect();
    assert_eq!(edited.len(), 1);
    assert!(edited[0].chosen);
    assert!(edited[0]
        .edited_text
        .as_deref()
        .unwrap()
        .ends_with("rained."));
    // Every pick says how long it took; every round shows its policies in a recorded order.
    assert!(lines
        .iter()
        .filter(|r| r.chosen)
        .all(|r| r.decision_ms.is_some()));
    for round in story.records.chunks(3) {
        let mut positions: Vec<u32> = round.iter().map(|r| r.display_position.unwrap()).collect();
        let mut slots: Vec<u32> = round.iter().map(|r| r.mix_slot.unwrap()).collect();
        positions.sort_unstable();
        slots.sort_unstable();
        assert_eq!((positions, slots), (vec![1, 2, 3], vec![1, 2, 3]));
        assert!(round.iter().all(|r| r.order_seed == round[0].order_seed));
        for r in round {
            match r.policy.as_str() {
                "step-mean" => assert_eq!(r.log_propensity, Some(0.0)),
                _ => assert!(r.log_propensity.unwrap().is_finite()),
            }
        }
    }
    assert!(lines
        .iter()
        .all(|r| r.param_table.as_deref() == Some("bundled")));
    assert_eq!(story.path.len(), 2);
    // Both step-2 picks (the undone one and the one after undo) came from the same round.
    let step2_picks: Vec<_> = lines
        .iter()
        .filter(|r| r.chosen && r.step == 2 && r.edited_at.is_none())
        .collect();
    assert_eq!(step2_picks.len(), 2);
    assert_eq!(step2_picks[0].created_at, step2_picks[1].created_at);
    assert_ne!(step2_picks[0].record_id, step2_picks[1].record_id);
    assert!(story.text.starts_with("Once upon a time"));
    assert!(
        story.text.ends_with("Then <b>it</b> rained."),
        "{}",
        story.text
    );
    assert_eq!(story.pending.len(), 3);
    assert!(story
        .pending_records()
        .iter()
        .all(|r| r.step == 3 && r.input_text == story.text));
    // The whole story is printed on quitting, model text with control characters escaped.
    assert!(shown.trim_end().ends_with("Then <b>it</b> rained."));
    assert!(
        !shown.contains('\u{1b}'),
        "no raw escape sequence reaches the terminal"
    );

    // Resuming: the pending round is offered again and a pick extends the same story.
    let shown = write(&log, &[], "2\nq\n");
    assert!(shown.contains("── step 3 ──"));
    let lines = log_lines(&log);
    let resumed = Story::from_records(&story.id, &lines).unwrap();
    assert_eq!(resumed.path.len(), 3);
    assert_eq!(resumed.path[..2], story.path[..]);
    let picked = resumed.record(&resumed.path[2]).unwrap();
    assert_eq!(picked.record_id, story.pending[1]);
    assert_eq!(picked.chosen_by.as_deref(), Some("human"));
    assert!(resumed.text.starts_with(&story.text));

    // --new starts another story in the same log; the first one stays.
    write(&log, &["--new", "--prompt", "A new tale"], "q\n");
    let lines = log_lines(&log);
    let last = lines.last().unwrap();
    assert_ne!(last.story_id, story.id);
    assert_eq!(last.input_text, "A new tale");
    assert!(Story::from_records(&story.id, &lines).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `write` keeps the story's keys and values in f16 unless told otherwise, as the web app does:
/// with the same seed the default writes what `--kv-cache f16` writes, log-probability for
/// log-probability, and `--kv-cache f32` writes other log-probabilities.
#[test]
fn the_cache_is_f16_unless_told() {
    let dir = std::env::temp_dir().join(format!("storywriter-write-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let outputs = |extra: &[&str]| {
        let log = dir.join(format!("{}.jsonl", extra.join("-")));
        let args = [&["--prompt", "Once upon a time", "--seed", "5"], extra].concat();
        write(&log, &args, "1\nq\n");
        let candidates: Vec<_> = log_lines(&log)
            .into_iter()
            .map(|r| (r.output_ids, r.logprobs))
            .collect();
        assert!(candidates.len() >= 6, "two rounds of three candidates");
        candidates
    };
    let default = outputs(&[]);
    assert_eq!(default, outputs(&["--kv-cache", "f16"]));
    let f32 = outputs(&["--kv-cache", "f32"]);
    let logprobs =
        |o: &[(Vec<u32>, Vec<f32>)]| o.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>();
    assert_ne!(logprobs(&default), logprobs(&f32));
    std::fs::remove_dir_all(&dir).unwrap();
}
