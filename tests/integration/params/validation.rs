//! Validation and clamping: every error names its field, repairs warn.

use super::*;

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
