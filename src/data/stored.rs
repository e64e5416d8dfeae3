//! Candidate records as the page stores them: each record's input as what it adds to its
//! parent's input and output, so that a story of N steps takes storage proportional to N, not
//! N² (every record's input is the whole story so far). [`expand`] rebuilds the records exactly.
//!
//! The exported format keeps whole inputs; only the page's IndexedDB holds this form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::records::CandidateRecord;
use crate::data::shared_input::{SharedIds, SharedText};

/// A record as stored: its input emptied and described by [`InputDelta`] when it continues its
/// parent's, and its place among the story's records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The record (with `input_text` and `input_ids` empty when `input_delta` is set).
    #[serde(flatten)]
    pub record: CandidateRecord,
    /// The input as the parent's input and output (cut as recorded) plus a tail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_delta: Option<InputDelta>,
    /// Its index in the story's records (generation order).
    #[serde(default)]
    pub position: usize,
}

/// A record's input rebuilt from its parent: with `base_text` = parent input text + output
/// text and `base_ids` = parent input ids + output ids, the input text is
/// `base_text[..text_kept] + text_tail` and the input ids are
/// `base_ids[ids_dropped..ids_dropped + ids_kept] + ids_tail` (the window may drop the oldest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputDelta {
    /// Bytes of the parent's text kept.
    pub text_kept: usize,
    /// Text after them.
    pub text_tail: String,
    /// Oldest parent ids the context window dropped.
    pub ids_dropped: usize,
    /// Parent ids kept after those.
    pub ids_kept: usize,
    /// Ids after them.
    pub ids_tail: Vec<u32>,
}

/// The stored form of a story's records (in generation order): a record whose parent is
/// among them stores only what its input adds to the parent's.
pub fn compact(records: &[CandidateRecord]) -> Vec<StoredRecord> {
    let by_id: HashMap<&str, &CandidateRecord> =
        records.iter().map(|r| (r.record_id.as_str(), r)).collect();
    records
        .iter()
        .enumerate()
        .map(|(position, record)| {
            let parent = record
                .parent_record_id
                .as_deref()
                .and_then(|id| by_id.get(id));
            match parent {
                Some(parent) => {
                    let input_delta = delta(parent, record);
                    let mut record = record.clone();
                    record.input_text = SharedText::default();
                    record.input_ids = SharedIds::default();
                    StoredRecord {
                        record,
                        input_delta: Some(input_delta),
                        position,
                    }
                }
                None => StoredRecord {
                    record: record.clone(),
                    input_delta: None,
                    position,
                },
            }
        })
        .collect()
}

/// What `record`'s input adds to its parent's input and output.
fn delta(parent: &CandidateRecord, record: &CandidateRecord) -> InputDelta {
    let (base_text, base_ids) = parent.continued();
    let text_kept = base_text.common_prefix_with(&record.input_text);
    let input_ids = record.input_ids.to_vec();
    let (ids_dropped, ids_kept) = base_ids.overlap(&input_ids);
    InputDelta {
        text_kept,
        text_tail: record.input_text.suffix(text_kept),
        ids_dropped,
        ids_kept,
        ids_tail: input_ids[ids_kept..].to_vec(),
    }
}

/// A stored record that cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("stored record {record_id}: {problem}")]
pub struct ExpandError {
    /// The record's id.
    pub record_id: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The records of one story rebuilt from their stored form, in generation order. A record
/// that cannot be rebuilt (its parent missing, its delta out of range) is left out and named
/// in the errors; the others are kept.
pub fn expand(mut stored: Vec<StoredRecord>) -> (Vec<CandidateRecord>, Vec<ExpandError>) {
    stored.sort_by_key(|s| s.position);
    let (whole, mut deltas): (Vec<_>, Vec<_>) =
        stored.into_iter().partition(|s| s.input_delta.is_none());
    let mut rebuilt: Vec<(usize, CandidateRecord)> =
        whole.into_iter().map(|s| (s.position, s.record)).collect();
    let mut errors = vec![];
    // A parent is rebuilt before its children: take the deltas step by step.
    deltas.sort_by_key(|s| (s.record.step, s.position));
    let mut index: HashMap<String, usize> = rebuilt
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (r.record_id.clone(), i))
        .collect();
    for stored in deltas {
        let StoredRecord {
            mut record,
            input_delta,
            position,
        } = stored;
        let delta = input_delta.expect("partitioned on the delta");
        let parent = record
            .parent_record_id
            .as_ref()
            .and_then(|id| index.get(id))
            .map(|&i| &rebuilt[i].1);
        match parent
            .ok_or_else(|| "its parent record is not stored".to_string())
            .and_then(|parent| apply(parent, &delta))
        {
            Ok((text, ids)) => {
                record.input_text = text;
                record.input_ids = ids;
                index.insert(record.record_id.clone(), rebuilt.len());
                rebuilt.push((position, record));
            }
            Err(problem) => errors.push(ExpandError {
                record_id: record.record_id,
                problem,
            }),
        }
    }
    rebuilt.sort_by_key(|(position, _)| *position);
    (rebuilt.into_iter().map(|(_, r)| r).collect(), errors)
}

/// The input text and ids `delta` describes on top of `parent`, sharing the parent's storage.
fn apply(parent: &CandidateRecord, delta: &InputDelta) -> Result<(SharedText, SharedIds), String> {
    let (base_text, base_ids) = parent.continued();
    let kept_text = base_text.prefix(delta.text_kept);
    if kept_text.len() != delta.text_kept || !base_text.is_char_boundary(delta.text_kept) {
        return Err(format!(
            "text_kept {} is not within its parent's text",
            delta.text_kept
        ));
    }
    let within = delta
        .ids_dropped
        .checked_add(delta.ids_kept)
        .is_some_and(|end| end <= base_ids.len());
    if !within {
        return Err(format!(
            "ids {}..+{} are not within its parent's {} ids",
            delta.ids_dropped,
            delta.ids_kept,
            base_ids.len()
        ));
    }
    Ok((
        kept_text.followed_by(&delta.text_tail),
        base_ids
            .window(delta.ids_dropped, delta.ids_kept)
            .followed_by(&delta.ids_tail),
    ))
}
