//! JSON Lines and card tables for the dataset export, and records grouped into rounds: the
//! pieces `dataset` and `unpaired` both write with.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::data::records::CandidateRecord;

pub(crate) fn json_line(value: &impl Serialize) -> String {
    // Cannot fail: every map key is a string, and serde_json writes non-finite floats as null.
    let mut line = serde_json::to_string(value).expect("records serialize to JSON");
    line.push('\n');
    line
}

/// The fields of a JSON value that have a type Arrow can infer: non-null scalars and non-empty
/// lists, as paths (`params.top_k`, `logprobs[]`).
fn typed_paths(prefix: &str, value: &serde_json::Value, paths: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                typed_paths(&format!("{prefix}.{key}"), value, paths);
            }
        }
        Value::Array(items) => {
            let path = format!("{prefix}[]");
            for item in items {
                typed_paths(&path, item, paths);
            }
        }
        _ => paths.push(prefix.to_string()),
    }
}

/// JSON Lines, one row per item in order, except that the few rows that first give each field
/// a type (a non-null value, a non-empty list) come first. `datasets` fixes a file's schema from
/// its first block (10 MB), and a column that is all null or all empty lists there fails to
/// cast once values appear further down.
pub(crate) fn jsonl_typed_first<T: Serialize>(rows: &[T]) -> String {
    let mut typed = BTreeSet::new();
    let (mut leaders, mut others) = (Vec::new(), Vec::new());
    for row in rows {
        let mut paths = Vec::new();
        if let Ok(value) = serde_json::to_value(row) {
            typed_paths("", &value, &mut paths);
        }
        let mut gives_a_type = false;
        for path in paths {
            gives_a_type |= typed.insert(path);
        }
        if gives_a_type {
            leaders.push(row);
        } else {
            others.push(row);
        }
    }
    leaders.into_iter().chain(others).map(json_line).collect()
}

/// The candidates generated for one story step from one parent (several generation rounds
/// when the writer asked again), in candidate order.
pub(crate) struct Round<'a> {
    pub(crate) records: Vec<&'a CandidateRecord>,
}

impl Round<'_> {
    pub(crate) fn chosen(&self) -> Vec<&CandidateRecord> {
        self.records.iter().copied().filter(|r| r.chosen).collect()
    }
}

pub(crate) type RoundKey<'a> = (&'a str, u32, Option<&'a str>);

/// Groups records by story, step and parent, sorted by these; a repeated `record_id` is taken
/// once.
pub(crate) fn rounds(records: &[CandidateRecord]) -> BTreeMap<RoundKey<'_>, Round<'_>> {
    let mut rounds: BTreeMap<RoundKey<'_>, Round<'_>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for record in records {
        if !seen.insert(record.record_id.as_str()) {
            continue;
        }
        let key = (
            record.story_id.as_str(),
            record.step,
            record.parent_record_id.as_deref(),
        );
        rounds
            .entry(key)
            .or_insert_with(|| Round {
                records: Vec::new(),
            })
            .records
            .push(record);
    }
    for round in rounds.values_mut() {
        round
            .records
            .sort_by(|a, b| (a.candidate, &a.record_id).cmp(&(b.candidate, &b.record_id)));
    }
    rounds
}

pub(crate) fn field_table(out: &mut String, fields: &[(&str, &str, &str)]) {
    out.push_str("| field | type | description |\n|---|---|---|\n");
    for (name, kind, description) in fields {
        out.push_str(&format!("| `{name}` | {kind} | {description} |\n"));
    }
}
