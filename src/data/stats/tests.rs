//! Unit tests of reading, tabulating and shrinking.

use super::*;
use serde::de::DeserializeSeed;
use serde_json::json;

#[test]
fn reads_our_records_and_foreign_spellings() {
    let ours = json!({"record_id": "65a1", "story_id": "s1", "step": 2, "chosen": true,
        "params": {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "typical_p": 1.0,
                   "repetition_penalty": 1.1, "max_new_tokens": 48, "greedy": false}});
    let foreign = json!({"_id": {"$oid": "65a1"}, "storyId": {"$oid": "s1"},
        "stepIndex": {"$numberInt": "2"}, "selected": 1, "temp": {"$numberDouble": "0.7"},
        "topK": {"$numberLong": "40"}, "topP": "0.9", "typical": 1,
        "repeat_penalty": {"$numberDecimal": "1.1"}, "max_tokens": 48,
        "created": {"$date": {"$numberLong": "1700000000000"}}});
    let a = SelectionRecord::from_json(&ours).unwrap();
    let b = SelectionRecord::from_json(&foreign).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.params.top_k, 40.0);
    assert_eq!(a.params.repetition_penalty, 1.1);
}

#[test]
fn missing_parameters_take_the_defaults() {
    let r =
        SelectionRecord::from_json(&json!({"story": 7, "step": "1", "chosen": "false"})).unwrap();
    assert_eq!(r.story_id, "7");
    assert_eq!(r.record_id, None);
    assert!(!r.chosen);
    assert_eq!(r.params, ParamValues::default());
    assert_eq!(r.params.top_k, 50.0);
}

#[test]
fn rejects_bad_values_naming_the_field() {
    let cases = [
        (
            json!({"story_id": "s", "step": 1, "chosen": true,
                "params": {"temperature": {"$numberDouble": "NaN"}}}),
            "`temperature`",
        ),
        (
            json!({"story_id": "s", "step": 1, "chosen": true, "temp": "Infinity"}),
            "`temp`",
        ),
        (
            json!({"story_id": "s", "step": 0, "chosen": true}),
            "`step`",
        ),
        (
            json!({"story_id": "s", "step": 1.5, "chosen": true}),
            "`step`",
        ),
        (json!({"story_id": "s", "step": 1, "chosen": 2}), "`chosen`"),
        (json!({"story_id": "s", "chosen": true}), "no `step`"),
        (json!({"step": 1, "chosen": true}), "no `story_id`"),
        (
            json!({"story_id": [], "step": 1, "chosen": true}),
            "`story_id`",
        ),
        (json!([1, 2]), "JSON object"),
    ];
    for (value, expected) in cases {
        let message = SelectionRecord::from_json(&value).unwrap_err().to_string();
        assert!(message.contains(expected), "{value}: {message}");
    }
}

#[test]
fn read_fields_keeps_what_the_normaliser_reads() {
    let text = r#"{"record_id": "r", "story": {"$oid": "s"}, "step": 1, "chosen": false,
        "input_ids": [1, 2, 3], "output_text": "x", "parameters": {"temp": 0.5, "x": 1},
        "temp": 0.7, "created": {"$date": "2025-01-01T00:00:00Z"}}"#;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let kept = ReadFields.deserialize(&mut deserializer).unwrap();
    let full: Value = serde_json::from_str(text).unwrap();
    let keys: Vec<&String> = kept.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["chosen", "parameters", "record_id", "step", "story", "temp"]
    );
    assert_eq!(kept["parameters"], full["parameters"]);
    assert_eq!(
        SelectionRecord::from_json(&kept).unwrap(),
        SelectionRecord::from_json(&full).unwrap()
    );
    for other in [
        "[1, {\"a\": 2}]",
        "17",
        "-3",
        "0.5",
        "\"s\"",
        "null",
        "true",
    ] {
        let mut deserializer = serde_json::Deserializer::from_str(other);
        let value = ReadFields.deserialize(&mut deserializer).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(other).unwrap());
    }
}

fn summary(mean: f64, std: f64, p: [f64; 3]) -> ParamSummary {
    ParamSummary {
        mean,
        std,
        p10: p[0],
        p50: p[1],
        p90: p[2],
    }
}

fn row(step: u32, count: u64, s: ParamSummary) -> StepParams {
    StepParams {
        step,
        count,
        temperature: s.clone(),
        top_k: s.clone(),
        top_p: s.clone(),
        typical_p: s.clone(),
        repetition_penalty: s.clone(),
        max_new_tokens: s,
    }
}

#[test]
fn shrink_mixes_with_weight_n_over_n_plus_k() {
    // n = 2, k = 2: w = 1/2. var' = (1 + 1)/2 + (1/4)(2 − 3.5)² = 1.5625 = 1.25².
    let own = row(3, 2, summary(2.0, 1.0, [1.0, 2.0, 3.0]));
    let global = row(0, 8, summary(3.5, 1.0, [2.0, 4.0, 4.0]));
    let shrunk = shrink(&own, &global, 2.0);
    assert_eq!(shrunk.step, 3);
    assert_eq!(shrunk.count, 2);
    assert_eq!(shrunk.top_p, summary(2.75, 1.25, [1.5, 3.0, 3.5]));
    assert_eq!(shrink(&own, &global, 0.0), own);
}
