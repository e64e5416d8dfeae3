//! What happens to a round after it is shown, as fields of its records (`storywriter.record/2`):
//! the pick (`chosen`, `chosen_by`, `chosen_at`, `decision_ms`), "rejected all" (the writer asked
//! for new candidates without picking: `rejected_all_at` on every candidate of the round) and
//! "edited after picking" (`edited_at`, `edited_text` on the picked candidate).
//!
//! Each event is logged as a new version of the records it changes, as a choice always was, so
//! logs stay one record per line and `dataset`, `stats` and `import` read them as before: a
//! later version replaces an earlier one when it only adds outcomes ([`supersedes`]).

use std::cmp::Ordering;

use crate::data::records::{timestamp_now, CandidateRecord};
use crate::data::story::Story;

/// The record fields an event may set after the record was written.
pub const OUTCOME_FIELDS: [&str; 7] = [
    "chosen",
    "chosen_by",
    "chosen_at",
    "decision_ms",
    "rejected_all_at",
    "edited_at",
    "edited_text",
];

/// How two versions of the same record compare when they differ only in [`OUTCOME_FIELDS`]:
/// `Greater` when `a` holds every outcome `b` holds and more (a later version), `Less` for the
/// reverse, `None` when each has an outcome the other lacks or they disagree on one.
pub fn supersedes(a: &CandidateRecord, b: &CandidateRecord) -> Option<Ordering> {
    fn covers(a: &CandidateRecord, b: &CandidateRecord) -> bool {
        fn set<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            b.is_none() || a == b
        }
        (!b.chosen || a.chosen)
            && set(&a.chosen_by, &b.chosen_by)
            && set(&a.chosen_at, &b.chosen_at)
            && set(&a.decision_ms, &b.decision_ms)
            && set(&a.rejected_all_at, &b.rejected_all_at)
            && set(&a.edited_at, &b.edited_at)
            && set(&a.edited_text, &b.edited_text)
    }
    match (covers(a, b), covers(b, a)) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Greater),
        (false, true) => Some(Ordering::Less),
        (false, false) => None,
    }
}

impl Story {
    /// The writer rejects every pending candidate and asks for new ones: each is marked with
    /// `rejected_all_at` and the round is no longer pending. Returns the updated records (to
    /// log); empty when nothing was pending.
    pub fn reject_all(&mut self) -> Vec<CandidateRecord> {
        let now = timestamp_now();
        let pending = std::mem::take(&mut self.pending);
        self.records
            .iter_mut()
            .filter(|r| pending.contains(&r.record_id))
            .map(|r| {
                r.rejected_all_at = Some(now.clone());
                r.clone()
            })
            .collect()
    }

    /// Replaces the text by hand, as [`Story::edit`], and marks the last picked candidate as
    /// edited after picking when the text changed. Returns that record's new version (to log).
    pub fn edit_after_pick(&mut self, text: &str) -> Option<CandidateRecord> {
        let changed = text != self.text;
        self.edit(text);
        let last = self.path.last()?.clone();
        if !changed {
            return None;
        }
        let record = self.records.iter_mut().find(|r| r.record_id == last)?;
        record.edited_at = Some(timestamp_now());
        record.edited_text = Some(text.to_string());
        Some(record.clone())
    }
}
