//! The step table (`storywriter.step-params/1`): validation, clamping, the rows beyond the table,
//! the parameter policies' distributions, loading from files and URLs, and `storywriter params`.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{json, Value};
use storywriter::params::{
    candidate_params, load_table, read_table, ParamSummary, Policy, PolicyMix, StepParams,
    StepTable, TableWarning, BUNDLED_VOCAB_SIZE, COUPLED_SUM, MAX_NEW_TOKENS_CAP, TREND_HORIZON,
};
use storywriter::sampling::SamplingParams;

const VOCAB: usize = BUNDLED_VOCAB_SIZE;

/// The bundled table as JSON, to edit.
fn bundled_value() -> Value {
    serde_json::from_str(&StepTable::bundled().to_json_pretty()).unwrap()
}

/// Parses `value` (as a table of the test), expecting success.
fn load(value: &Value, vocab: usize) -> (StepTable, Vec<TableWarning>) {
    StepTable::from_json(&value.to_string(), "test.json", vocab).unwrap()
}

/// Parses `value`, expecting an error, and returns its message.
fn load_error(value: &Value) -> String {
    match StepTable::from_json(&value.to_string(), "test.json", VOCAB) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn set(value: &mut Value, pointer: &str, new: Value) {
    *value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = new;
}

fn warning_at<'a>(warnings: &'a [TableWarning], path: &str) -> &'a TableWarning {
    warnings
        .iter()
        .find(|w| w.path == path)
        .unwrap_or_else(|| panic!("no warning at {path}: {warnings:?}"))
}

fn summary(mean: f64, std: f64) -> ParamSummary {
    ParamSummary {
        mean,
        std,
        p10: mean - 1.2816 * std,
        p50: mean,
        p90: mean + 1.2816 * std,
    }
}

fn row(step: u32, temperature: f64, top_k: f64) -> StepParams {
    StepParams {
        step,
        count: 10,
        temperature: summary(temperature, 0.1),
        top_k: summary(top_k, 8.0),
        top_p: summary(0.9, 0.03),
        typical_p: summary(0.95, 0.02),
        repetition_penalty: summary(1.1, 0.05),
        max_new_tokens: summary(32.0, 6.0),
    }
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn correlation(xs: &[f64], ys: &[f64]) -> f64 {
    let (mx, sx) = mean_std(xs);
    let (my, sy) = mean_std(ys);
    let cov = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / xs.len() as f64;
    cov / (sx * sy)
}

/// The value of `name` in `params`, as f64.
fn value(params: &SamplingParams, name: &str) -> f64 {
    match name {
        "temperature" => params.temperature.into(),
        "top_k" => params.top_k as f64,
        "top_p" => params.top_p.into(),
        "typical_p" => params.typical_p.into(),
        "repetition_penalty" => params.repetition_penalty.into(),
        "max_new_tokens" => params.max_new_tokens as f64,
        _ => unreachable!(),
    }
}

fn summary_of<'a>(row: &'a StepParams, name: &str) -> &'a ParamSummary {
    match name {
        "temperature" => &row.temperature,
        "top_k" => &row.top_k,
        "top_p" => &row.top_p,
        "typical_p" => &row.typical_p,
        "repetition_penalty" => &row.repetition_penalty,
        "max_new_tokens" => &row.max_new_tokens,
        _ => unreachable!(),
    }
}

const NAMES: [&str; 6] = [
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "max_new_tokens",
];

/// `n` draws of a single-candidate `policy` at `step`, one seed each.
fn draws(table: &StepTable, policy: Policy, step: u32, n: u64) -> Vec<SamplingParams> {
    let mix = PolicyMix {
        policies: vec![policy],
        ..PolicyMix::default()
    };
    (0..n)
        .map(|seed| candidate_params(table, &mix, step, seed).remove(0).0)
        .collect()
}

// ----- validation -----

#[test]
fn bundled_table_is_a_documented_prior_without_warnings() {
    let (table, warnings) = read_table("bundled", VOCAB).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(table.source.kind, "prior");
    assert!(table.source.description.contains("storywriter stats"));
    assert_eq!(table.source.chosen, 0);
    assert_eq!(
        table.steps.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

#[test]
fn wrong_schema_is_an_error() {
    let mut table = bundled_value();
    set(&mut table, "/schema", json!("storywriter.step-params/2"));
    let message = load_error(&table);
    assert!(
        message.starts_with("test.json: schema: expected"),
        "{message}"
    );
    assert!(message.contains("storywriter.step-params/1"), "{message}");
}

#[test]
fn each_validation_error_names_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/steps/3/temperature/mean",
            json!("hot"),
            "steps[3].temperature.mean: expected a number, got the string \"hot\"",
        ),
        (
            "/steps/0/count",
            json!(-1),
            "steps[0].count: expected a non-negative integer",
        ),
        (
            "/steps/0/count",
            json!(1.5),
            "steps[0].count: expected a non-negative integer",
        ),
        ("/global/step", json!(2), "global.step: expected 0"),
        (
            "/steps/2/step",
            json!(2),
            "steps[2].step: expected a step greater than 2",
        ),
        (
            "/steps/0/step",
            json!(0),
            "steps[0].step: expected a step greater than 0",
        ),
        (
            "/source/kind",
            json!("guess"),
            "source.kind: expected \"prior\" or \"selection-logs\"",
        ),
        (
            "/source/stories",
            json!(9007199254740992u64),
            "source.stories: expected a non-negative integer below 2^53",
        ),
        (
            "/source/created",
            json!(2026),
            "source.created: expected a string, got 2026",
        ),
        (
            "/global/top_p",
            json!([0.9]),
            "global.top_p: expected an object, got an array",
        ),
        (
            "/steps",
            json!({}),
            "steps: expected an array, got an object",
        ),
    ];
    for (pointer, bad, expected) in cases {
        let mut table = bundled_value();
        set(&mut table, pointer, bad);
        let message = load_error(&table);
        assert!(
            message.contains(expected),
            "{pointer}: {message:?} lacks {expected:?}"
        );
        assert!(message.starts_with("test.json: "), "{message}");
    }
}

#[test]
fn missing_fields_are_named() {
    for (parent, key, path) in [
        ("/steps/1/top_p", "p90", "steps[1].top_p.p90"),
        ("/steps/4", "max_new_tokens", "steps[4].max_new_tokens"),
        ("/source", "generator", "source.generator"),
        ("", "global", "global"),
    ] {
        let mut table = bundled_value();
        let object = if parent.is_empty() {
            &mut table
        } else {
            table.pointer_mut(parent).unwrap()
        };
        object.as_object_mut().unwrap().remove(key);
        let message = load_error(&table);
        assert_eq!(message, format!("test.json: {path}: missing field"));
    }
}

#[test]
fn invalid_json_and_non_objects_are_errors() {
    let e = StepTable::from_json("{\"schema\": ", "t.json", VOCAB).unwrap_err();
    assert!(e.to_string().starts_with("t.json: not valid JSON: "), "{e}");
    let e = StepTable::from_json("[1, 2]", "t.json", VOCAB).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.json: (table): expected an object, got an array"
    );
    // Python writes NaN as a bare word, which is not JSON.
    let text = bundled_value()
        .to_string()
        .replacen("\"mean\":0.9,", "\"mean\":NaN,", 1);
    assert!(StepTable::from_json(&text, "t.json", VOCAB).is_err());
}

// ----- clamping -----

#[test]
fn temperature_at_or_below_zero_is_clamped_with_a_warning() {
    for bad in [0.0, -0.5] {
        let mut table = bundled_value();
        set(&mut table, "/steps/3/temperature/mean", json!(bad));
        let (loaded, warnings) = load(&table, VOCAB);
        assert_eq!(loaded.steps[3].temperature.mean, 0.05);
        let w = warning_at(&warnings, "steps[3].temperature.mean");
        assert!(w.message.contains("clamped to 0.05"), "{w}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}

#[test]
fn nan_is_replaced_with_a_warning() {
    let mut table = bundled_value();
    // serde_json writes NaN as null.
    set(&mut table, "/steps/2/top_p/mean", Value::Null);
    set(&mut table, "/steps/2/top_p/std", Value::Null);
    set(&mut table, "/steps/2/top_p/p50", Value::Null);
    set(&mut table, "/global/temperature/mean", Value::Null);
    let (loaded, warnings) = load(&table, VOCAB);
    let global_top_p = loaded.global.top_p.clone();
    assert_eq!(loaded.steps[2].top_p.mean, global_top_p.mean);
    assert_eq!(loaded.steps[2].top_p.std, global_top_p.std);
    assert_eq!(loaded.steps[2].top_p.p50, global_top_p.mean);
    // In the global row, NaN falls back to the Hugging Face default.
    assert_eq!(loaded.global.temperature.mean, 1.0);
    for path in [
        "steps[2].top_p.mean",
        "steps[2].top_p.std",
        "steps[2].top_p.p50",
        "global.temperature.mean",
    ] {
        assert!(warning_at(&warnings, path)
            .message
            .starts_with("not a number"));
    }
    assert_eq!(warnings.len(), 4, "{warnings:?}");
}

#[test]
fn top_k_beyond_the_vocabulary_is_clamped() {
    let mut table = bundled_value();
    set(&mut table, "/steps/0/top_k/p90", json!(5000));
    set(&mut table, "/global/top_k/mean", json!(1e9));
    let (loaded, warnings) = load(&table, 1000);
    assert_eq!(loaded.steps[0].top_k.p90, 1000.0);
    assert_eq!(loaded.global.top_k.mean, 1000.0);
    // With the mean at the vocabulary size, the spread must vanish.
    assert_eq!(loaded.global.top_k.std, 0.0);
    for path in [
        "steps[0].top_k.p90",
        "global.top_k.mean",
        "global.top_k.std",
    ] {
        warning_at(&warnings, path);
    }
    // The policies never exceed the vocabulary.
    for (params, _) in candidate_params(
        &loaded,
        &"step-sample,coupled-random,step-mean".parse().unwrap(),
        0,
        1,
    ) {
        assert!(params.top_k <= 1000, "{params:?}");
    }
}

#[test]
fn top_p_outside_zero_one_is_clamped() {
    let mut table = bundled_value();
    set(&mut table, "/steps/5/top_p/mean", json!(0.0));
    set(&mut table, "/steps/6/top_p/p90", json!(1.5));
    set(&mut table, "/steps/7/typical_p/p10", json!(-0.2));
    let (loaded, warnings) = load(&table, VOCAB);
    assert_eq!(loaded.steps[5].top_p.mean, 0.01);
    assert_eq!(loaded.steps[6].top_p.p90, 1.0);
    assert_eq!(loaded.steps[7].typical_p.p10, 0.01);
    for path in [
        "steps[5].top_p.mean",
        "steps[6].top_p.p90",
        "steps[7].typical_p.p10",
    ] {
        warning_at(&warnings, path);
    }
}

#[test]
fn other_repairs_warn() {
    let mut table = bundled_value();
    set(&mut table, "/steps/1/repetition_penalty/std", json!(-0.1));
    set(&mut table, "/steps/1/max_new_tokens/mean", json!(100000));
    set(&mut table, "/steps/1/max_new_tokens/p10", json!(0));
    // p50 above p90: sorted.
    set(&mut table, "/steps/2/temperature/p50", json!(2.0));
    table["steps"][0]["temprature"] = json!({});
    let (loaded, warnings) = load(&table, VOCAB);
    assert_eq!(loaded.steps[1].repetition_penalty.std, 0.0);
    assert_eq!(
        loaded.steps[1].max_new_tokens.mean,
        MAX_NEW_TOKENS_CAP as f64
    );
    assert_eq!(loaded.steps[1].max_new_tokens.p10, 1.0);
    let t = &loaded.steps[2].temperature;
    assert!(t.p10 <= t.p50 && t.p50 <= t.p90 && t.p90 == 2.0, "{t:?}");
    warning_at(&warnings, "steps[1].repetition_penalty.std");
    warning_at(&warnings, "steps[1].max_new_tokens.mean");
    warning_at(&warnings, "steps[1].max_new_tokens.p10");
    assert!(warning_at(&warnings, "steps[2].temperature")
        .message
        .contains("sorted"));
    assert_eq!(
        warning_at(&warnings, "steps[0].temprature").message,
        "unknown field, ignored"
    );
}

#[test]
fn clamped_tables_still_give_valid_parameters() {
    let mut table = bundled_value();
    for (i, field) in NAMES.iter().enumerate() {
        set(&mut table, &format!("/steps/{i}/{field}/mean"), json!(-1e6));
        set(&mut table, &format!("/steps/{i}/{field}/std"), json!(1e6));
    }
    let (loaded, _) = load(&table, 300);
    let mix: PolicyMix = "step-mean,step-sample,coupled-random,fixed"
        .parse()
        .unwrap();
    for step in 0..14 {
        for seed in 0..50 {
            for (params, _) in candidate_params(&loaded, &mix, step, seed) {
                params.validate().unwrap();
                assert!(params.top_k <= 300);
                assert!((1..=MAX_NEW_TOKENS_CAP).contains(&params.max_new_tokens));
            }
        }
    }
}

// ----- rows beyond the table -----

fn table_of(steps: Vec<StepParams>) -> StepTable {
    let mut table = StepTable::bundled();
    table.global = StepParams {
        step: 0,
        ..row(0, 0.8, 40.0)
    };
    table.steps = steps;
    table
}

#[test]
fn tabulated_steps_and_step_zero_are_returned_as_is() {
    let table = StepTable::bundled();
    assert_eq!(*table.row(3), table.steps[2]);
    assert_eq!(*table.row(0), table.global);
}

#[test]
fn steps_after_the_table_follow_the_last_rows_trend_then_flatten() {
    // Temperature falls by 0.02 a step over steps 1..=6; the global band is 0.8 ± 0.128.
    let steps: Vec<StepParams> = (1..=6)
        .map(|s| row(s, 0.9 - 0.02 * f64::from(s - 1), 40.0 + f64::from(s)))
        .collect();
    let table = table_of(steps);
    let last = table.steps.last().unwrap().clone();
    for (step, expected) in [(7, 0.78), (8, 0.76), (9, 0.74)] {
        let r = table.row(step);
        assert_eq!(r.step, step);
        assert_eq!(r.count, 0);
        assert!(
            (r.temperature.mean - expected).abs() < 1e-9,
            "{step}: {r:?}"
        );
        // Percentiles move with the mean, the std is the last row's.
        let delta = r.temperature.mean - last.temperature.mean;
        assert!((r.temperature.p90 - (last.temperature.p90 + delta)).abs() < 1e-9);
        assert_eq!(r.temperature.std, last.temperature.std);
        assert!((r.top_k.mean - (46.0 + f64::from(step - 6))).abs() < 1e-9);
    }
    // The trend stops TREND_HORIZON steps after the table, and never leaves the global band.
    let flat = table.row(6 + TREND_HORIZON);
    assert_eq!(
        *table.row(6 + TREND_HORIZON + 20),
        StepParams {
            step: 6 + TREND_HORIZON + 20,
            ..flat.clone().into_owned()
        }
    );
    let band_low = table.global.temperature.p10;
    assert!(
        (flat.temperature.mean - band_low.max(0.8 - 0.02 * f64::from(TREND_HORIZON))).abs() < 1e-9,
        "{:?}",
        flat.temperature
    );
}

#[test]
fn trend_is_kept_inside_the_global_band() {
    // A steep rise: 0.5 a step from 1.0; the global p90 is 0.8 + 1.2816 × 0.1.
    let steps: Vec<StepParams> = (1..=3)
        .map(|s| row(s, 1.0 + 0.5 * f64::from(s), 40.0))
        .collect();
    let table = table_of(steps);
    // The last mean (2.5) is above the band already: the band widens to it, no further.
    assert!((table.row(5).temperature.mean - 2.5).abs() < 1e-9);
}

#[test]
fn gaps_interpolate_and_short_tables_use_the_global_row() {
    let table = table_of(vec![row(2, 0.9, 40.0), row(6, 0.5, 60.0)]);
    let r = table.row(3);
    assert!((r.temperature.mean - 0.8).abs() < 1e-9);
    assert!((r.top_k.mean - 45.0).abs() < 1e-9);
    assert_eq!((r.step, r.count), (3, 0));
    // Before the first row: the first row.
    assert_eq!(
        *table.row(1),
        StepParams {
            step: 1,
            count: 0,
            ..table.steps[0].clone()
        }
    );
    // One row: no trend, the global row.
    let single = table_of(vec![row(1, 0.9, 40.0)]);
    assert_eq!(
        *single.row(4),
        StepParams {
            step: 4,
            count: 0,
            ..single.global.clone()
        }
    );
    // No rows at all: the global row.
    let empty = table_of(vec![]);
    assert_eq!(
        *empty.row(2),
        StepParams {
            step: 2,
            count: 0,
            ..empty.global.clone()
        }
    );
}

// ----- policies -----

#[test]
fn step_mean_gives_the_rounded_means() {
    let table = StepTable::bundled();
    for step in [1, 5, 10, 13] {
        let r = table.row(step);
        for (params, policy) in candidate_params(&table, &"step-mean".parse().unwrap(), step, 9) {
            assert_eq!(policy, Policy::StepMean);
            assert_eq!(params.temperature, r.temperature.mean as f32);
            assert_eq!(params.top_p, r.top_p.mean as f32);
            assert_eq!(params.typical_p, r.typical_p.mean as f32);
            assert_eq!(params.repetition_penalty, r.repetition_penalty.mean as f32);
            assert_eq!(params.top_k, r.top_k.mean.round() as usize);
            assert_eq!(
                params.max_new_tokens,
                r.max_new_tokens.mean.round() as usize
            );
            assert_eq!(params.min_p, 0.0);
        }
    }
}

#[test]
fn step_sample_matches_the_recorded_mean_and_spread() {
    let table = StepTable::bundled();
    for step in [1, 10] {
        let samples = draws(&table, Policy::StepSample, step, 5000);
        let r = table.row(step);
        for name in NAMES {
            let xs: Vec<f64> = samples.iter().map(|p| value(p, name)).collect();
            let (mean, std) = mean_std(&xs);
            let s = summary_of(&r, name);
            // Standard error of the mean is std / 70; the truncation at ±3 std keeps the mean.
            assert!(
                (mean - s.mean).abs() < 0.08 * s.std,
                "step {step} {name}: mean {mean} vs {}",
                s.mean
            );
            // Truncation at ±3 std shrinks the std by 1.3 %.
            assert!(
                (std / s.std - 1.0).abs() < 0.06,
                "step {step} {name}: std {std} vs {}",
                s.std
            );
            assert!(xs.iter().all(|x| (x - s.mean).abs() <= 3.0 * s.std + 0.5));
        }
    }
}

#[test]
fn coupled_random_stays_in_range_and_holds_the_linear_coupling() {
    let table = StepTable::bundled();
    for step in [1, 7, 14] {
        let r = table.row(step);
        let samples = draws(&table, Policy::CoupledRandom, step, 5000);
        let position = |p: &SamplingParams, name: &str| {
            let s = summary_of(&r, name);
            (value(p, name) - s.p10) / (s.p90 - s.p10)
        };
        for p in &samples {
            let sum = position(p, "temperature") + position(p, "top_k") + position(p, "top_p");
            assert!(
                (sum - COUPLED_SUM).abs() < 1e-5,
                "step {step}: sum {sum} for {p:?}"
            );
            for name in ["temperature", "top_p", "typical_p", "repetition_penalty"] {
                let u = position(p, name);
                assert!((-1e-6..=1.0 + 1e-6).contains(&u), "{name} at {u}");
            }
            let k = r.top_k.p10.round()..=r.top_k.p90.round();
            assert!(k.contains(&(p.top_k as f64)), "top_k {}", p.top_k);
        }
        // Means: the centre of each range (the table's mean for this symmetric prior).
        for name in NAMES {
            let s = summary_of(&r, name);
            let xs: Vec<f64> = samples.iter().map(|p| value(p, name)).collect();
            let (mean, _) = mean_std(&xs);
            let tolerance = 0.03 * (s.p90 - s.p10)
                + if name.ends_with('k') || name.starts_with("max") {
                    0.5
                } else {
                    0.0
                };
            assert!(
                (mean - s.mean).abs() < tolerance,
                "step {step} {name}: mean {mean} vs {}",
                s.mean
            );
        }
        // A spike in top_k is compensated: top_k and temperature move against each other.
        let k: Vec<f64> = samples.iter().map(|p| p.top_k as f64).collect();
        let t: Vec<f64> = samples.iter().map(|p| p.temperature.into()).collect();
        let corr = correlation(&k, &t);
        assert!(corr < -0.3, "step {step}: correlation {corr}");
        // Highest top_k quintile → temperature below the centre on average.
        let high: Vec<f64> = samples
            .iter()
            .filter(|p| (p.top_k as f64) > r.top_k.p10 + 0.8 * (r.top_k.p90 - r.top_k.p10))
            .map(|p| p.temperature.into())
            .collect();
        assert!(mean_std(&high).0 < r.temperature.mean);
    }
}

#[test]
fn coupled_random_carries_the_sum_without_an_empty_range() {
    // The bundled typical_p spread is real; give temperature no spread: top_k and top_p
    // carry the coupling (u(top_k) + u(top_p) = 1).
    let mut table = StepTable::bundled();
    let t = &mut table.steps[0].temperature;
    (t.std, t.p10, t.p90) = (0.0, t.mean, t.mean);
    let r = table.row(1).into_owned();
    for p in draws(&table, Policy::CoupledRandom, 1, 500) {
        assert_eq!(
            f64::from(p.temperature),
            f64::from(r.temperature.mean as f32)
        );
        let u_k = (p.top_k as f64 - r.top_k.p10) / (r.top_k.p90 - r.top_k.p10);
        let u_p = (f64::from(p.top_p) - r.top_p.p10) / (r.top_p.p90 - r.top_p.p10);
        assert!((u_k + u_p - 1.0).abs() < 1e-5, "{u_k} + {u_p}");
    }
}

#[test]
fn fixed_uses_the_fixed_parameters_and_every_policy_takes_the_untabulated_fields() {
    let fixed = SamplingParams {
        temperature: 0.7,
        top_k: 12,
        min_p: 0.05,
        stop_at_sentence_end: true,
        max_new_tokens: 20,
        ..SamplingParams::default()
    };
    let mix = PolicyMix {
        policies: Policy::ALL.to_vec(),
        fixed: fixed.clone(),
    };
    let out = candidate_params(&StepTable::bundled(), &mix, 2, 4);
    assert_eq!(out[3], (fixed, Policy::Fixed));
    for (params, _) in &out {
        assert_eq!(params.min_p, 0.05);
        assert!(params.stop_at_sentence_end);
        assert!(!params.greedy);
    }
}

#[test]
fn seeds_reproduce_and_vary() {
    let table = StepTable::bundled();
    let mix: PolicyMix = "step-sample,coupled-random,step-sample".parse().unwrap();
    let a = candidate_params(&table, &mix, 3, 42);
    assert_eq!(a, candidate_params(&table, &mix, 3, 42));
    assert_ne!(a, candidate_params(&table, &mix, 3, 43));
    // Candidates of one call differ from each other, and from the same seed at another step.
    assert_ne!(a[0].0, a[2].0);
    assert_ne!(a[0].0, candidate_params(&table, &mix, 4, 42)[0].0);
    // A candidate's parameters do not depend on the other candidates' policies.
    let other: PolicyMix = "fixed,coupled-random,step-sample".parse().unwrap();
    assert_eq!(candidate_params(&table, &other, 3, 42)[1..], a[1..]);
}

#[test]
fn recorded_draws_are_reproduced() {
    crate::common::check_pinned_param_draws();
}

#[test]
fn policy_names_parse_and_print() {
    for policy in Policy::ALL {
        assert_eq!(policy.name().parse::<Policy>().unwrap(), policy);
        assert_eq!(serde_json::to_value(policy).unwrap(), json!(policy.name()));
    }
    let mix: PolicyMix = " step-mean, coupled-random ,fixed".parse().unwrap();
    assert_eq!(
        mix.policies,
        [Policy::StepMean, Policy::CoupledRandom, Policy::Fixed]
    );
    let e = "step-mean,,fixed"
        .parse::<PolicyMix>()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("candidate 2 of policy mix"), "{e}");
    let e = "random".parse::<Policy>().unwrap_err().to_string();
    assert!(
        e.contains("expected step-mean, step-sample, coupled-random or fixed"),
        "{e}"
    );
    assert_eq!(
        PolicyMix::default().policies,
        [Policy::StepMean, Policy::StepSample, Policy::StepSample]
    );
}

// ----- loading from files and URLs -----

/// Serves one HTTP response on a local port; returns the URL.
fn serve_once(status: &str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/params/steps.json",
        listener.local_addr().unwrap()
    );
    let status = status.to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    url
}

/// A table unlike the bundled one, and the same table read back from its JSON (serde_json's
/// default float parsing may differ from the written value in the last bit).
fn distinct_table() -> (StepTable, StepTable) {
    let mut table = table_of(vec![row(1, 0.6, 20.0), row(2, 0.65, 22.0)]);
    table.source.kind = "selection-logs".into();
    let (parsed, warnings) = StepTable::from_json(&table.to_json_pretty(), "text", VOCAB).unwrap();
    assert!(warnings.is_empty());
    (table, parsed)
}

#[test]
fn a_table_is_fetched_from_a_url() {
    let (table, parsed) = distinct_table();
    let url = serve_once("200 OK", table.to_json_pretty());
    let (loaded, warnings, _) = load_table(&url, VOCAB);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(loaded, parsed);
}

#[test]
fn a_failing_url_falls_back_to_the_bundled_table() {
    // A port that was just closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/steps.json");
    let (loaded, warnings, _) = load_table(&url, VOCAB);
    assert_eq!(loaded, StepTable::bundled());
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "");
    assert!(warnings[0].message.contains(&url), "{}", warnings[0]);
    assert!(warnings[0].message.contains("using the bundled table"));
    assert!(read_table(&url, VOCAB).is_err());

    let url = serve_once("404 Not Found", "no".into());
    let (loaded, warnings, _) = load_table(&url, VOCAB);
    assert_eq!(loaded, StepTable::bundled());
    assert!(warnings[0].message.contains("404"), "{}", warnings[0]);
}

#[test]
fn an_invalid_served_table_falls_back_with_the_reason() {
    let mut value = bundled_value();
    set(&mut value, "/steps/1/top_k/std", json!("wide"));
    let url = serve_once("200 OK", value.to_string());
    let (loaded, warnings, _) = load_table(&url, VOCAB);
    assert_eq!(loaded, StepTable::bundled());
    assert!(
        warnings[0]
            .message
            .contains(&format!("{url}: steps[1].top_k.std: expected a number")),
        "{}",
        warnings[0]
    );
}

#[test]
fn tables_load_from_files() {
    let dir = std::env::temp_dir().join(format!("storywriter-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steps.json");
    let (table, parsed) = distinct_table();
    std::fs::write(&path, table.to_json_pretty()).unwrap();
    let spec = path.to_str().unwrap();
    assert_eq!(load_table(spec, VOCAB), (parsed, vec![], spec.to_string()));
    let missing = dir.join("missing.json");
    let (loaded, warnings, _) = load_table(missing.to_str().unwrap(), VOCAB);
    assert_eq!(loaded, StepTable::bundled());
    assert!(warnings[0].message.contains("missing.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- the command line -----

fn storywriter(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_storywriter"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_prints_each_candidates_policy_and_parameters() {
    let out = storywriter(&[
        "params",
        "--step",
        "3",
        "--policy",
        "step-mean,coupled-random",
        "--seed",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["step"], 3);
    assert_eq!(report["warnings"], json!([]));
    let mix: PolicyMix = "step-mean,coupled-random".parse().unwrap();
    let printed: Vec<(SamplingParams, Policy)> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let params = serde_json::from_value(c["params"].clone()).unwrap();
            (params, c["policy"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(printed, candidate_params(&StepTable::bundled(), &mix, 3, 5));
}

#[test]
fn cli_reports_warnings_and_errors() {
    let out = storywriter(&["params", "--table", "/nonexistent/steps.json"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["candidates"].as_array().unwrap().len(), 3);
    assert!(report["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/steps.json"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: cannot use the table"));

    for args in [
        vec!["params", "--table", "/nonexistent/steps.json", "--strict"],
        vec!["params", "--policy", "step-mean,hot"],
        vec!["params", "--step", "0"],
    ] {
        let out = storywriter(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
}
