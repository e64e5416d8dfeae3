//! Tables from a generated log against an independent computation, and shrinkage.

use super::*;

#[test]
fn generated_log_matches_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(7);
    let log = write_native_log(dir.path(), &records);
    let max_steps = 30;
    let (table, stderr) = cli_table(
        dir.path(),
        &[&log],
        &[
            "--prior-strength",
            "0",
            "--max-steps",
            &max_steps.to_string(),
        ],
    );
    assert!(stderr.contains("10000 records"), "{stderr}");

    let chosen: Vec<&Generated> = records.iter().filter(|g| g.record.chosen).collect();
    let stories: HashSet<&str> = records.iter().map(|g| g.record.story_id.as_str()).collect();
    assert_eq!(table.source.kind, "selection-logs");
    assert_eq!(table.source.records, RECORDS as u64);
    assert_eq!(table.source.chosen, chosen.len() as u64);
    assert_eq!(table.source.stories, stories.len() as u64);
    assert!(table.source.description.contains("records.jsonl"));
    assert!(table.source.generator.starts_with("storywriter "));
    assert!(
        table.source.created.ends_with('Z'),
        "{}",
        table.source.created
    );

    let all: Vec<[f64; 6]> = chosen.iter().map(|g| g.values).collect();
    let mut sketched = check_row("global", &table.global, &expected(&all));
    let mut by_step: BTreeMap<u32, Vec<[f64; 6]>> = BTreeMap::new();
    for g in &chosen {
        by_step.entry(g.record.step).or_default().push(g.values);
    }
    assert!(
        by_step.keys().any(|&s| s > max_steps),
        "the log should reach past --max-steps"
    );
    by_step.retain(|&step, _| step <= max_steps);
    let steps: Vec<u32> = table.steps.iter().map(|r| r.step).collect();
    assert_eq!(steps, by_step.keys().copied().collect::<Vec<_>>());
    for row in &table.steps {
        sketched += check_row(
            &format!("step {}", row.step),
            row,
            &expected(&by_step[&row.step]),
        );
    }
    assert!(sketched > 0, "no row went through the sketch");

    // The library on the same log gives the same table.
    let options = StatsOptions {
        prior_strength: 0.0,
        max_steps,
    };
    same_table(&library_table(&log, options), &table);
}

/// The shrinkage formula, written out again.
fn shrunk(own: &ParamSummary, global: &ParamSummary, n: f64, k: f64) -> [f64; 5] {
    let w = n / (n + k);
    let var = w * own.std.powi(2)
        + (1.0 - w) * global.std.powi(2)
        + w * (1.0 - w) * (own.mean - global.mean).powi(2);
    [
        w * own.mean + (1.0 - w) * global.mean,
        var.sqrt(),
        w * own.p10 + (1.0 - w) * global.p10,
        w * own.p50 + (1.0 - w) * global.p50,
        w * own.p90 + (1.0 - w) * global.p90,
    ]
}

#[test]
fn default_prior_strength_shrinks_every_step_toward_global() {
    let dir = tempfile::tempdir().unwrap();
    let records = generate_records(11);
    let log = write_native_log(dir.path(), &records);
    let (raw, _) = cli_table(dir.path(), &[&log], &["--prior-strength", "0"]);
    let (table, _) = cli_table(dir.path(), &[&log], &[]);
    assert!(
        table.source.shrinkage.contains("k = 20"),
        "{}",
        table.source.shrinkage
    );
    assert_eq!(table.global, raw.global);
    assert_eq!(table.steps.len(), raw.steps.len());
    let mut moved = 0;
    for (row, own) in table.steps.iter().zip(&raw.steps) {
        assert_eq!((row.step, row.count), (own.step, own.count));
        let pairs = summaries(row)
            .into_iter()
            .zip(summaries(own))
            .zip(summaries(&raw.global));
        for ((s, o), g) in pairs {
            let want = shrunk(o, g, own.count as f64, 20.0);
            let got = [s.mean, s.std, s.p10, s.p50, s.p90];
            for (a, b) in got.iter().zip(want) {
                assert!(
                    close(*a, b, 1e-12),
                    "step {}: {got:?} vs {want:?}",
                    row.step
                );
            }
            moved += usize::from(s != o);
        }
    }
    assert!(moved > 0);
}

#[test]
fn shrinkage_by_hand() {
    // Step 1: temperatures 1 and 3 (n = 2); step 2: six times 4 (n = 6); k = 2.
    // Global: n = 8, mean 3.5, variance 106/8 − 3.5² = 1; p10, p50, p90 = 1, 4, 4.
    let mut builder = StatsBuilder::new(StatsOptions {
        prior_strength: 2.0,
        max_steps: 10,
    })
    .unwrap();
    let mut values = vec![record("a", 1, true, 1.0), record("b", 1, true, 3.0)];
    values.extend((0..6).map(|i| record(&format!("s{i}"), 2, true, 4.0)));
    values.push(record("a", 3, false, 9.0));
    for v in &values {
        builder.add_json(v).unwrap();
    }
    let table = builder.finish("by hand").unwrap();
    assert_eq!((table.source.records, table.source.chosen), (9, 8));
    assert_eq!(table.source.stories, 8);
    let check = |s: &ParamSummary, want: [f64; 5]| {
        let got = [s.mean, s.std, s.p10, s.p50, s.p90];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w, 1e-12), "{got:?} vs {want:?}");
        }
    };
    check(&table.global.temperature, [3.5, 1.0, 1.0, 4.0, 4.0]);
    // Step 3 has no chosen candidate: no row.
    assert_eq!(table.steps.len(), 2);
    // Step 1: w = 2/4. mean 2 → 2.75; var ½·1 + ½·1 + ¼·(2 − 3.5)² = 1.5625 → std 1.25;
    // own percentiles 1, 1, 1 → 1, 2.5, 2.5.
    let s1 = &table.steps[0];
    assert_eq!((s1.step, s1.count), (1, 2));
    check(&s1.temperature, [2.75, 1.25, 1.0, 2.5, 2.5]);
    // Step 2: w = 6/8. mean 4 → 3.875; var ¼·1 + (3/16)·0.25 = 0.296875; percentiles
    // 4 → 3.25, 4, 4.
    let s2 = &table.steps[1];
    assert_eq!((s2.step, s2.count), (2, 6));
    check(&s2.temperature, [3.875, 0.296875f64.sqrt(), 3.25, 4.0, 4.0]);
    // The other parameters are at their defaults everywhere: nothing to shrink.
    assert_eq!(s1.top_k.mean, 50.0);
    assert_eq!(s1.top_k.std, 0.0);
}
