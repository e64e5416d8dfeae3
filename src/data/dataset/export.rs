//! The files of a dataset directory: records and preference pairs as JSON Lines.

use serde::{Deserialize, Serialize};

use crate::data::jsonl::{json_line, jsonl_typed_first, rounds};
use crate::data::records::CandidateRecord;

use crate::shared::ModelIdentity;
use crate::shared::SamplingParams;

/// File name of the records in a dataset directory.
pub const RECORDS_FILE: &str = "records.jsonl";
/// File name of the preference pairs in a dataset directory.
pub const PREFERENCES_FILE: &str = "preferences.jsonl";

/// One record as a JSON line (with its `\n`), as stored in a log or a store.
pub fn record_json_line(record: &CandidateRecord) -> String {
    json_line(record)
}

/// Records as JSON Lines for `datasets`: one object per line with every field present in every
/// row (absent values as `null`) and always the same JSON type, so that Arrow infers a single
/// schema. Rows keep their order, except that the few rows that first give a field a value (a
/// non-null value, a non-empty list) come first: `datasets` fixes a file's schema from its
/// first 10 MB. For a store or a log, write [`record_json_line`]s instead.
pub fn records_jsonl(records: &[CandidateRecord]) -> String {
    jsonl_typed_first(records)
}

/// One preference: a candidate the writer took over one they did not, for the same prompt.
///
/// `prompt`, `chosen` and `rejected` are what reward-model and DPO trainers (e.g. TRL) read;
/// the other fields say where the pair comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The story text both candidates continue.
    pub prompt: String,
    /// The chosen continuation.
    pub chosen: String,
    /// The other continuation.
    pub rejected: String,
    /// The story.
    pub story_id: String,
    /// The story step.
    pub step: u32,
    /// The record both candidates continue (`None` at step 1).
    pub parent_record_id: Option<String>,
    /// `record_id` of the chosen candidate.
    pub chosen_record_id: String,
    /// `record_id` of the rejected candidate.
    pub rejected_record_id: String,
    /// Sampling parameters of the chosen candidate.
    pub chosen_params: SamplingParams,
    /// Sampling parameters of the rejected candidate.
    pub rejected_params: SamplingParams,
    /// Who chose: `human` or a picker's name.
    pub chosen_by: String,
    /// The model that generated the chosen candidate.
    pub model: ModelIdentity,
}

/// Why a chosen/other couple of a round gives no pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PairSkip {
    /// Both texts are the same: no preference to learn.
    IdenticalText,
    /// The other candidate continues a different text: not a comparison.
    OtherPrompt,
}

pub(super) fn pair_skip(chosen: &CandidateRecord, other: &CandidateRecord) -> Option<PairSkip> {
    if other.input_text != chosen.input_text {
        Some(PairSkip::OtherPrompt)
    } else if other.output_text == chosen.output_text {
        Some(PairSkip::IdenticalText)
    } else {
        None
    }
}

/// Preference pairs: for every round (same story, step and parent record) with exactly one
/// chosen candidate, one pair of the chosen candidate with each other candidate.
///
/// Rounds with no choice, or with several (the writer went back and branched), give no pair;
/// neither do candidates whose text equals the chosen one (no preference to learn) or that
/// continue a different input text. Pairs are sorted by story, step, parent, then candidate.
pub fn preference_pairs(records: &[CandidateRecord]) -> Vec<PreferencePair> {
    let mut pairs = Vec::new();
    for round in rounds(records).values() {
        let [chosen] = round.chosen()[..] else {
            continue;
        };
        for other in &round.records {
            if other.chosen || pair_skip(chosen, other).is_some() {
                continue;
            }
            pairs.push(PreferencePair {
                prompt: chosen.input_text.to_string(),
                chosen: chosen.output_text.clone(),
                rejected: other.output_text.clone(),
                story_id: chosen.story_id.clone(),
                step: chosen.step,
                parent_record_id: chosen.parent_record_id.clone(),
                chosen_record_id: chosen.record_id.clone(),
                rejected_record_id: other.record_id.clone(),
                chosen_params: chosen.params.clone(),
                rejected_params: other.params.clone(),
                chosen_by: chosen.chosen_by.clone().unwrap_or_default(),
                model: chosen.model.clone(),
            });
        }
    }
    pairs
}

/// Preference pairs as JSON Lines for `datasets` (every field in every row, and the rows that
/// first give a field a value first, as [`records_jsonl`]).
pub fn preferences_jsonl(pairs: &[PreferencePair]) -> String {
    jsonl_typed_first(pairs)
}
