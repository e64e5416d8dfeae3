//! `storywriter auto` with the tiny model: reproducible stories, a run killed halfway and
//! restarted loses and duplicates nothing, shards merge into the same stories, the log exports
//! as a dataset; and the `picker` commands on its log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storywriter::data::dataset::read_records;
use storywriter::data::story::Story;
use storywriter::picker::features::group_rounds;
use storywriter::records::CandidateRecord;

const STORIES: u64 = 6;
const STEPS: u32 = 3;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_storywriter"))
}

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-pow2")
}

fn auto_args(log: &Path, shard: &str) -> Vec<String> {
    [
        "auto",
        "--model",
        tiny().to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--steps",
        &STEPS.to_string(),
        "--stories",
        &STORIES.to_string(),
        "--chooser",
        "random",
        "--seed",
        "5",
        "--table",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/short_steps.json")
            .to_str()
            .unwrap(),
        "--shard",
        shard,
        "--log",
        log.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the CLI with `args`, asserting success; returns its stdout.
fn run_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_auto(log: &Path, shard: &str) {
    run_ok(&auto_args(log, shard));
}

fn records(log: &Path) -> Vec<CandidateRecord> {
    let text = std::fs::read_to_string(log).unwrap();
    let (records, errors) = read_records(text.as_bytes(), "log").unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    records
}

/// Story id → final text, checking every story is complete and every round unique.
fn stories(records: &[CandidateRecord]) -> BTreeMap<String, String> {
    let rounds = group_rounds(records);
    let mut out = BTreeMap::new();
    for round in &rounds {
        assert_eq!(round.len(), 3);
        assert_eq!(
            round.iter().filter(|r| r.chosen).count(),
            1,
            "one pick per round"
        );
        assert!(round
            .iter()
            .all(|r| r.chosen_by.as_deref().is_none_or(|b| b == "random")));
        let story = Story::from_records(&round[0].story_id, records).unwrap();
        assert_eq!(story.path.len(), STEPS as usize);
        out.insert(story.id.clone(), story.text);
    }
    assert_eq!(rounds.len(), out.len() * STEPS as usize, "no round twice");
    out
}

#[test]
fn one_job_or_several_write_the_same_stories() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = None;
    for jobs in ["1", "3"] {
        let log = dir.path().join(format!("jobs-{jobs}.jsonl"));
        let mut args = auto_args(&log, "0/1");
        args.extend(["--jobs".to_string(), jobs.to_string()]);
        let summary: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
        assert_eq!(summary["jobs"], jobs.parse::<u64>().unwrap());
        let written = stories(&records(&log));
        assert_eq!(written.len(), STORIES as usize);
        match &expected {
            None => expected = Some(written),
            Some(expected) => assert_eq!(&written, expected),
        }
    }
    let log = dir.path().join("jobs-0.jsonl");
    let mut args = auto_args(&log, "0/1");
    args.extend(["--jobs".to_string(), "0".to_string()]);
    let out = bin().args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jobs 0"));
}

#[test]
fn killed_halfway_and_restarted_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.jsonl");
    run_auto(&whole, "0/1");
    let expected = stories(&records(&whole));
    assert_eq!(expected.len(), STORIES as usize);

    // The same run killed once a few rounds are logged, then run again.
    let cut = dir.path().join("cut.jsonl");
    let mut child = bin()
        .args(auto_args(&cut, "0/1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(&cut).map_or(0, |t| t.lines().count()) < 20 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = records(&cut).len();
    assert!(before < records(&whole).len(), "killed before the end");
    run_auto(&cut, "0/1");
    assert_eq!(stories(&records(&cut)), expected);

    // A finished run does nothing more.
    let lines = records(&cut).len();
    run_auto(&cut, "0/1");
    assert_eq!(records(&cut).len(), lines);

    // Two shards write the same stories between them.
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    run_auto(&a, "0/2");
    run_auto(&b, "1/2");
    let mut both = records(&a);
    both.extend(records(&b));
    assert_eq!(stories(&both), expected);

    // The log exports as a dataset.
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let dataset = dir.path().join("dataset");
    run_ok(&[
        "export".into(),
        path(&cut),
        "--output-dir".into(),
        path(&dataset),
    ]);
    let unpaired = std::fs::read_to_string(dataset.join("unpaired.jsonl")).unwrap();
    assert_eq!(
        unpaired.lines().count(),
        STORIES as usize * STEPS as usize * 3
    );

    // A picker trains on it and evaluates as one JSON object.
    let picker = path(&dir.path().join("p.safetensors"));
    run_ok(&["picker", "train", &path(&whole), "--output", &picker]);
    assert!(dir.path().join("p.json").exists());
    let out = run_ok(&["picker", "eval", &path(&cut), "--json", "--picker", &picker]);
    let eval: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(eval["rounds"], STORIES * u64::from(STEPS));
    for key in ["top1", "log_loss", "chance"] {
        assert!(eval[key].is_number(), "{key}: {eval}");
    }
    assert!(eval["top1_ci95"].as_array().is_some_and(|ci| ci.len() == 2));
    for name in [
        "highest-mean-logprob",
        "lowest-temperature",
        "position-1",
        "params-only",
    ] {
        assert!(eval["baselines"][name].is_number(), "{name}: {eval}");
    }
    let out = run_ok(&["picker", "score", &path(&cut), "--picker", &picker]);
    assert_eq!(out.lines().count(), 18);
}

#[test]
fn picker_commands_give_clear_errors_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = bin()
        .args(["picker", "train", empty.to_str().unwrap(), "--output"])
        .arg(dir.path().join("p.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no records"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    let out = bin()
        .args(["picker", "eval", empty.to_str().unwrap(), "--picker"])
        .arg(dir.path().join("missing.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot read the picker"),
        "{stderr}"
    );
}
