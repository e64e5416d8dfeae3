//! Merging record logs into a store by `record_id`, without duplicates.

use std::collections::{BTreeSet, HashMap};

use crate::data::events::{supersedes, OUTCOME_FIELDS};
use crate::data::records::CandidateRecord;

/// What became of one incoming record in a merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Its id was new: added at the end.
    Added,
    /// The merged records already held it, identical or in a later state (chosen, rejected or
    /// edited where the incoming copy is not): nothing changed.
    Duplicate,
    /// The incoming copy is the same candidate with more outcomes (chosen, rejected all,
    /// edited after picking; see [`crate::data::events`]): it replaced the held one in place.
    Updated,
    /// The merged records held a different record with its id: that one was kept.
    Conflict {
        /// The top-level fields that differ.
        fields: Vec<String>,
    },
}

/// A record id that two different records carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The id.
    pub record_id: String,
    /// The top-level fields in which the incoming record differs from the kept one.
    pub fields: Vec<String>,
}

/// The result of a merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeReport {
    /// The existing records in their order (some replaced by their chosen copy), then the added
    /// ones in the order they came.
    pub records: Vec<CandidateRecord>,
    /// Incoming records with a new id.
    pub added: usize,
    /// Incoming records already held (see [`MergeOutcome::Duplicate`]).
    pub duplicates: usize,
    /// Positions in `records` of the records replaced by their chosen copy.
    pub updated: Vec<usize>,
    /// Incoming records that clashed with a held one, which was kept.
    pub conflicts: Vec<Conflict>,
}

/// Merges records by `record_id`, one at a time.
///
/// Existing records are never dropped or reordered; records with a new id are appended. An
/// incoming record whose id is already held is a duplicate when equal; when the two differ only
/// in their outcome fields ([`OUTCOME_FIELDS`]: the choice and the events), the version holding
/// every outcome of the other wins (the held copy is updated in place if it is the earlier one,
/// as when a log written at generation time is merged before the log written at the choice);
/// otherwise it is a conflict and the held record is kept.
#[derive(Clone, Debug, Default)]
pub struct Merger {
    report: MergeReport,
    index: HashMap<String, usize>,
}

impl Merger {
    /// Starts from `existing` (kept as it is, even if some ids repeat: the first one is the one
    /// compared with).
    pub fn new(existing: Vec<CandidateRecord>) -> Self {
        let mut index = HashMap::with_capacity(existing.len());
        for (position, record) in existing.iter().enumerate() {
            index.entry(record.record_id.clone()).or_insert(position);
        }
        Self {
            report: MergeReport {
                records: existing,
                ..MergeReport::default()
            },
            index,
        }
    }

    /// Merges one record and says what became of it.
    pub fn add(&mut self, record: CandidateRecord) -> MergeOutcome {
        let report = &mut self.report;
        let Some(&position) = self.index.get(&record.record_id) else {
            self.index
                .insert(record.record_id.clone(), report.records.len());
            report.records.push(record);
            report.added += 1;
            return MergeOutcome::Added;
        };
        let held = &mut report.records[position];
        if *held == record {
            report.duplicates += 1;
            return MergeOutcome::Duplicate;
        }
        let fields = differing_fields(held, &record);
        let only_outcomes = !fields.is_empty()
            && fields
                .iter()
                .all(|field| OUTCOME_FIELDS.contains(&field.as_str()));
        match only_outcomes.then(|| supersedes(&record, held)).flatten() {
            Some(std::cmp::Ordering::Greater) => {
                *held = record;
                report.updated.push(position);
                MergeOutcome::Updated
            }
            Some(_) => {
                report.duplicates += 1;
                MergeOutcome::Duplicate
            }
            None => {
                report.conflicts.push(Conflict {
                    record_id: record.record_id,
                    fields: fields.clone(),
                });
                MergeOutcome::Conflict { fields }
            }
        }
    }

    /// The merged records and the counts.
    pub fn finish(self) -> MergeReport {
        self.report
    }
}

/// Merges `incoming` into `existing` by `record_id`; see [`Merger`] for the rules.
pub fn merge_records(
    existing: Vec<CandidateRecord>,
    incoming: impl IntoIterator<Item = CandidateRecord>,
) -> MergeReport {
    let mut merger = Merger::new(existing);
    for record in incoming {
        merger.add(record);
    }
    merger.finish()
}

fn differing_fields(a: &CandidateRecord, b: &CandidateRecord) -> Vec<String> {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .filter(|key| a.get(*key) != b.get(*key))
                .cloned()
                .collect()
        }
        _ => vec!["record".to_string()],
    }
}
