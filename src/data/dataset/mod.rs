//! Candidate records as a Hugging Face dataset, and merging record logs into a store.
//!
//! * Reading: [`parse_records`] (a whole text, e.g. in the web app) and [`record_lines`] (streamed
//!   over any [`BufRead`](std::io::BufRead), keeping each line's bytes) check every line and report each bad one
//!   with its 1-based number and a reason that names the field; good lines are always kept.
//! * Merging: [`Merger`] / [`merge_records`] add records by `record_id` without duplicates.
//! * Export: [`records_jsonl`], [`preference_pairs`] + [`preferences_jsonl`] and [`dataset_card`]
//!   (with [`crate::data::unpaired`]) make the files of a dataset directory ([`DatasetFiles`]) that
//!   `datasets.load_dataset` reads as they are.

mod card;
mod export;
mod merge;
mod read;

use card::add_hidden_states_to_card;
pub use card::dataset_card;
pub use export::{
    preference_pairs, preferences_jsonl, record_json_line, records_jsonl, PreferencePair,
    PREFERENCES_FILE, RECORDS_FILE,
};
pub use merge::{merge_records, Conflict, MergeOutcome, MergeReport, Merger};
pub use read::{
    check_record, parse_line, parse_records, read_records, record_lines, LineContent, LineError,
    RecordLine, RecordLines,
};

use crate::data::records::CandidateRecord;
use crate::data::unpaired::{
    add_unpaired_to_card, unpaired_examples, unpaired_jsonl, UNPAIRED_FILE,
};

/// File name of the dataset card.
pub const CARD_FILE: &str = "README.md";

/// The files of a dataset directory.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetFiles {
    /// [`RECORDS_FILE`]: every record.
    pub records_jsonl: String,
    /// [`PREFERENCES_FILE`]: the preference pairs.
    pub preferences_jsonl: String,
    /// [`CARD_FILE`]: the dataset card.
    pub card: String,
    /// Number of preference pairs.
    pub pairs: usize,
    /// [`UNPAIRED_FILE`]: KTO-style labelled completions with their rank.
    pub unpaired_jsonl: String,
}

impl DatasetFiles {
    /// Builds the files from records (expected to have distinct ids, as a merge gives),
    /// leaving their hidden states out of `records.jsonl`.
    pub fn build(records: &[CandidateRecord]) -> Self {
        Self::build_with(records, false)
    }

    /// Like [`Self::build`]; with `hidden_states`, `records.jsonl` keeps each record's
    /// `hidden_mean` (the card says which).
    pub fn build_with(records: &[CandidateRecord], hidden_states: bool) -> Self {
        let pairs = preference_pairs(records);
        let unpaired = unpaired_examples(records);
        let mut card = dataset_card(records, &pairs);
        add_unpaired_to_card(&mut card, &unpaired);
        let with_hidden = records.iter().filter(|r| r.hidden_mean.is_some()).count();
        add_hidden_states_to_card(&mut card, with_hidden, hidden_states);
        let stripped: Vec<CandidateRecord>;
        let rows = if hidden_states || with_hidden == 0 {
            records
        } else {
            stripped = records
                .iter()
                .map(|r| CandidateRecord {
                    hidden_mean: None,
                    ..r.clone()
                })
                .collect();
            &stripped
        };
        Self {
            records_jsonl: records_jsonl(rows),
            preferences_jsonl: preferences_jsonl(&pairs),
            card,
            pairs: pairs.len(),
            unpaired_jsonl: unpaired_jsonl(&unpaired),
        }
    }

    /// File names and contents.
    pub fn files(&self) -> [(&'static str, &str); 4] {
        [
            (RECORDS_FILE, &self.records_jsonl),
            (PREFERENCES_FILE, &self.preferences_jsonl),
            (UNPAIRED_FILE, &self.unpaired_jsonl),
            (CARD_FILE, &self.card),
        ]
    }
}
