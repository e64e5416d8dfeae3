//! `storywriter write` over a long session, driven as a script would: picks on the tiny model
//! (30 in the default run, `WRITE_SOAK_ROUNDS=200 cargo test --test integration write_soak --
//! --nocapture` for the 200), the log checked record by record, and the process's peak
//! memory at a tenth of the rounds and at the end printed (a figure for BENCHMARKS.md, not a
//! pass/fail bound: peak resident memory varies from run to run by several MB).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use storywriter::dataset::read_records;
use storywriter::story::Story;

use super::write_cli::spawn_write;

/// The process's peak resident memory (VmHWM) in kB.
fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until the log holds `lines` lines (the writer then waits for the next key).
fn wait_for_lines(log: &Path, lines: usize) {
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(log).map_or(0, |t| t.lines().count());
        assert!(now <= lines, "{now} lines in the log, expected {lines}");
        if now == lines {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the log stopped at {now} lines"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_long_session_keeps_every_record() {
    let rounds: usize = std::env::var("WRITE_SOAK_ROUNDS").map_or(30, |n| n.parse().unwrap());
    let early = (rounds / 10).max(1);
    let dir = std::env::temp_dir().join(format!("storywriter-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("story.jsonl");
    let _ = std::fs::remove_file(&log);
    let mut child = spawn_write(
        &log,
        &[
            "--prompt",
            "The lighthouse keeper kept a log",
            "--seed",
            "11",
        ],
    );
    // What it shows is not read here: drained, so that a full pipe never blocks the writer.
    let mut shown = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || std::io::copy(&mut shown, &mut std::io::sink()));
    let mut keys = child.stdin.take().unwrap();
    // Each round: three candidate lines; each pick: one more (the chosen version). After pick
    // n the round n + 1 waits: 3 (n + 1) + n lines.
    let (mut peaks, mut log_kb) = (vec![], vec![]);
    for round in 1..=rounds {
        writeln!(keys, "{}", 1 + round % 3).unwrap();
        if round == early || round == rounds {
            wait_for_lines(&log, 3 * (round + 1) + round);
            peaks.push(peak_kb(child.id()));
            log_kb.push(std::fs::metadata(&log).unwrap().len() / 1024);
        }
    }
    writeln!(keys, "q").unwrap();
    drop(keys);
    let out = child.wait_with_output().unwrap();
    drain.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "peak memory: {} kB at round {early}, {} kB at round {rounds}; the log: {} kB, {} kB",
        peaks[0], peaks[1], log_kb[0], log_kb[1]
    );

    let text = std::fs::read_to_string(&log).unwrap();
    let (records, errors) = read_records(text.as_bytes(), "story.jsonl").unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let story = Story::from_records(&records[0].story_id, &records).unwrap();
    // Rounds of three, the last one waiting; a pick per step, each continuing the pick before it.
    assert_eq!(story.records.len(), 3 * (rounds + 1));
    assert_eq!(story.path.len(), rounds);
    for (step, pair) in story.path.windows(2).enumerate() {
        let [parent, child] = pair else {
            unreachable!()
        };
        let child = story
            .records
            .iter()
            .find(|r| &r.record_id == child)
            .unwrap();
        assert_eq!(
            child.parent_record_id.as_ref(),
            Some(parent),
            "step {}",
            step + 2
        );
        assert!(child.chosen);
    }
}
