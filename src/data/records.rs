//! Candidate records: one per generated candidate, enough to replay it exactly (model, input
//! ids, parameters, seed) and to study which candidates writers prefer.

use serde::{Deserialize, Serialize};

use crate::data::shared_input::{SharedIds, SharedText};
use crate::shared::FinishReason;
use crate::shared::HiddenState;
use crate::shared::ModelIdentity;
use crate::shared::SamplingParams;

/// The schema tag new records carry.
pub const RECORD_SCHEMA: &str = "storywriter.record/2";

/// The first schema, still read: the same fields without the research fields of `/2`
/// (`display_position` … `edited_text`), which read as `null`.
pub const RECORD_SCHEMA_V1: &str = "storywriter.record/1";

/// Whether records with this schema tag are read.
pub fn is_known_schema(schema: &str) -> bool {
    schema == RECORD_SCHEMA || schema == RECORD_SCHEMA_V1
}

/// One generated candidate and what became of it.
///
/// Integers stay below 2^53 (seeds included) so that JavaScript and Arrow read them exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// [`RECORD_SCHEMA`] (or [`RECORD_SCHEMA_V1`] in older logs).
    pub schema: String,
    /// Unique id of this record (32 lowercase hex digits).
    pub record_id: String,
    /// The story it belongs to.
    pub story_id: String,
    /// Story step it was generated for (1 = continuing the opening prompt).
    pub step: u32,
    /// Its position among the step's candidates (1, 2, 3).
    pub candidate: u32,
    /// `record_id` of the candidate chosen at the previous step that this one continues; `None`
    /// at step 1. Stories branch: several steps may share a parent.
    pub parent_record_id: Option<String>,
    /// The story text the candidate continues (held once: shared with the records it
    /// continues).
    pub input_text: SharedText,
    /// Its token ids as fed to the model (after any context trimming; shared likewise).
    pub input_ids: SharedIds,
    /// Every sampling parameter.
    pub params: SamplingParams,
    /// The policy that produced them (`step-mean`, `step-sample`, `coupled-random`, `fixed`,
    /// `manual`).
    pub policy: String,
    /// The per-step table the policy read (`bundled table`, `table from URL`, a file, …);
    /// `null` when it read none (`fixed`) and in records written before this field.
    #[serde(default)]
    pub param_table: Option<String>,
    /// RNG seed (< 2^53).
    pub seed: u64,
    /// The generated text.
    pub output_text: String,
    /// The generated ids (the end-of-sequence id included when produced).
    pub output_ids: Vec<u32>,
    /// The model's log-probability of each generated id.
    pub logprobs: Vec<f32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Whether the writer (or a picker) took this candidate.
    pub chosen: bool,
    /// Who chose it: `human` or a picker's name; `None` when not chosen.
    pub chosen_by: Option<String>,
    /// When the candidate was generated (RFC 3339, UTC, milliseconds).
    pub created_at: String,
    /// When it was chosen, if it was.
    pub chosen_at: Option<String>,
    /// The model that generated it.
    pub model: ModelIdentity,
    /// The app that generated it, e.g. `storywriter 0.1.0`.
    pub app_version: String,
    /// Where it was shown among the round's candidates (1 = first); `/2`. The policies are
    /// assigned to positions in a seeded random order (see [`crate::data::design`]).
    #[serde(default)]
    pub display_position: Option<u32>,
    /// Its policy's place in the policy mix (1-based) before the shuffle; `/2`.
    #[serde(default)]
    pub mix_slot: Option<u32>,
    /// Seed of the round's shuffle of policies over positions (< 2^53); `/2`.
    #[serde(default)]
    pub order_seed: Option<u64>,
    /// Natural log of the probability (a density for continuous parameters) with which the
    /// policy drew these parameters; 0 for deterministic policies; `null` where the policy does
    /// not know it (`coupled-random`, `manual`). See [`crate::data::design::log_propensity`].
    #[serde(default)]
    pub log_propensity: Option<f64>,
    /// Milliseconds from the end of the round (`created_at`) to the pick, on the chosen record.
    #[serde(default)]
    pub decision_ms: Option<u64>,
    /// When the writer rejected the whole round (asked for new candidates) without picking.
    #[serde(default)]
    pub rejected_all_at: Option<String>,
    /// When the story text was edited by hand after this candidate was picked.
    #[serde(default)]
    pub edited_at: Option<String>,
    /// The story text after that edit.
    #[serde(default)]
    pub edited_text: Option<String>,
    /// The mean of BLOOM's final hidden state over the states that produced the generated ids,
    /// taken while generating, as f16 in base64 (the picker's text features); absent in older
    /// records, and left out of exported datasets unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_mean: Option<HiddenState>,
    /// For a candidate of a "reroll from here" round: the record whose first tokens its input
    /// kept (its input is that record's input and those tokens). Absent otherwise, and in
    /// older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerolled_from: Option<String>,
}

impl CandidateRecord {
    /// Whether the candidate wrote tokens but no text: every id it wrote besides a final
    /// end-of-sequence has no text of its own (an unused entry of the vocabulary, which a model
    /// with random weights may pick). Its text is empty for another reason than ending at once.
    pub fn wrote_no_text(&self) -> bool {
        let end = usize::from(self.finish_reason == FinishReason::Eos);
        self.output_text.is_empty() && self.output_ids.len() > end
    }

    /// What the next step's input continues: this record's input followed by its output,
    /// sharing the input's storage.
    pub fn continued(&self) -> (SharedText, SharedIds) {
        (
            self.input_text.followed_by(&self.output_text),
            self.input_ids.followed_by(&self.output_ids),
        )
    }

    /// Makes this record's input share its storage with `text` and `ids` (what its parent
    /// continues, see [`Self::continued`]) as far as they agree; the input stays the same.
    pub fn share_input_with(&mut self, text: &SharedText, ids: &SharedIds) {
        self.input_text = text.continued_as(&self.input_text.to_string());
        self.input_ids = ids.continued_as(&self.input_ids.to_vec());
    }
}

/// A fresh random record or story id: 32 lowercase hex digits from the system's entropy source
/// (the browser's `crypto.getRandomValues` on wasm32).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system entropy source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random seed below 2^53 (exact in JavaScript numbers and Arrow int64).
pub fn new_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system entropy source is available");
    u64::from_le_bytes(bytes) >> 11
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-29T07:20:56.123Z`
/// (from the browser's clock on wasm32).
pub fn timestamp_now() -> String {
    let since_epoch = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .unwrap_or_default();
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since_epoch).to_string()
}

/// Milliseconds from `start` to `end` (RFC 3339 timestamps); `None` if either is missing or
/// unreadable, or `end` is earlier.
pub fn millis_between(start: &str, end: &Option<String>) -> Option<u64> {
    let start = parse_timestamp(start)?;
    let end = parse_timestamp(end.as_deref()?)?;
    end.duration_since(start).ok().map(|d| d.as_millis() as u64)
}

/// An RFC 3339 timestamp as a time; `None` when unreadable.
pub fn parse_timestamp(at: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_between_timestamps() {
        let end = Some("2026-12-03T10:00:01.250Z".to_string());
        assert_eq!(millis_between("2026-12-03T10:00:00.000Z", &end), Some(1250));
        assert_eq!(millis_between("2026-12-03T10:00:02.000Z", &end), None);
        assert_eq!(millis_between("garbage", &end), None);
        assert_eq!(millis_between("2026-12-03T10:00:00.000Z", &None), None);
    }

    #[test]
    fn no_text_is_told_apart_from_ending_at_once() {
        let sample = include_str!("../../tests/fixtures/records_sample.jsonl");
        let first = sample.lines().next().expect("a record");
        let mut record: CandidateRecord = serde_json::from_str(first).expect("a record");
        let set = |record: &mut CandidateRecord, text: &str, ids: &[u32], finish| {
            record.output_text = text.to_string();
            record.output_ids = ids.to_vec();
            record.finish_reason = finish;
        };
        set(&mut record, "", &[2], FinishReason::Eos);
        assert!(!record.wrote_no_text(), "ended at once on eos");
        set(&mut record, "", &[], FinishReason::Stopped);
        assert!(!record.wrote_no_text(), "stopped before a token");
        set(&mut record, "", &[7, 7, 2], FinishReason::Eos);
        assert!(record.wrote_no_text(), "two tokens without text, then eos");
        set(&mut record, "", &[7; 29], FinishReason::Length);
        assert!(record.wrote_no_text(), "29 tokens without text");
        set(&mut record, " a", &[7, 30], FinishReason::Length);
        assert!(!record.wrote_no_text(), "a token with text");
    }
}
