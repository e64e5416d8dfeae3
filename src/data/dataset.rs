//! Candidate records as a Hugging Face dataset, and merging record logs into a store.
//!
//! * Reading: [`parse_records`] (a whole text, e.g. in the web app) and [`record_lines`] (streamed
//!   over any [`BufRead`], keeping each line's bytes) check every line and report each bad one
//!   with its 1-based number and a reason that names the field; good lines are always kept.
//! * Merging: [`Merger`] / [`merge_records`] add records by `record_id` without duplicates.
//! * Export: [`records_jsonl`], [`preference_pairs`] + [`preferences_jsonl`] and [`dataset_card`]
//!   (with [`crate::data::unpaired`]) make the files of a dataset directory ([`DatasetFiles`]) that
//!   `datasets.load_dataset` reads as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::data::events::{supersedes, OUTCOME_FIELDS};
use crate::data::jsonl::{field_table, json_line, jsonl_typed_first, rounds};
use crate::data::records::{is_known_schema, CandidateRecord, RECORD_SCHEMA, RECORD_SCHEMA_V1};
use crate::data::unpaired::{
    add_unpaired_to_card, unpaired_examples, unpaired_jsonl, UNPAIRED_FILE,
};
use crate::error::{Error, Result};
use crate::shared::FinishReason;
use crate::shared::ModelIdentity;
use crate::shared::SamplingParams;

/// File name of the records in a dataset directory.
pub const RECORDS_FILE: &str = "records.jsonl";
/// File name of the preference pairs in a dataset directory.
pub const PREFERENCES_FILE: &str = "preferences.jsonl";
/// File name of the dataset card.
pub const CARD_FILE: &str = "README.md";

/// Seeds (and every JSON integer) must stay below this to be exact in JavaScript and Arrow.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// A line of a records file that holds no valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// The file (or other source) the line comes from.
    pub origin: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the field (and the column for malformed JSON).
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

/// What one line of a records file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum LineContent {
    /// Only whitespace (allowed anywhere).
    Blank,
    /// A valid record.
    Record(Box<CandidateRecord>),
    /// Anything else.
    Bad(LineError),
}

/// Parses and checks one line (without its line terminator) of a records file.
pub fn parse_line(text: &str, line: usize, origin: &str) -> LineContent {
    let text = if line == 1 {
        text.trim_start_matches('\u{feff}')
    } else {
        text
    };
    if text.trim().is_empty() {
        return LineContent::Blank;
    }
    match decode_record(text) {
        Ok(record) => LineContent::Record(Box::new(record)),
        Err(message) => LineContent::Bad(LineError {
            origin: origin.to_string(),
            line,
            message,
        }),
    }
}

/// Parses a whole JSON Lines text: the valid records in order, and one error per bad line.
/// Blank lines are skipped.
pub fn parse_records(text: &str, origin: &str) -> (Vec<CandidateRecord>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line, index + 1, origin) {
            LineContent::Blank => {}
            LineContent::Record(record) => records.push(*record),
            LineContent::Bad(error) => errors.push(error),
        }
    }
    (records, errors)
}

/// Reads a records file to the end: the valid records in order, and one error per bad line.
/// Fails only when reading fails.
pub fn read_records(
    reader: impl BufRead,
    origin: &str,
) -> Result<(Vec<CandidateRecord>, Vec<LineError>)> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for line in record_lines(reader, origin) {
        match line?.content {
            LineContent::Blank => {}
            LineContent::Record(record) => records.push(*record),
            LineContent::Bad(error) => errors.push(error),
        }
    }
    Ok((records, errors))
}

/// One line of a records file as read.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordLine {
    /// 1-based line number.
    pub line: usize,
    /// Its bytes, without the final `\n` (a `\r` before it stays), to copy it unchanged.
    pub raw: Vec<u8>,
    /// What it holds.
    pub content: LineContent,
}

/// Streams the lines of a records file; see [`record_lines`].
#[derive(Debug)]
pub struct RecordLines<R> {
    reader: R,
    origin: String,
    line: usize,
    failed: bool,
}

/// Streams the lines of a records file (JSON Lines), each parsed and checked. Lines that are not
/// UTF-8 are reported as bad lines; an I/O error ends the stream.
pub fn record_lines<R: BufRead>(reader: R, origin: &str) -> RecordLines<R> {
    RecordLines {
        reader,
        origin: origin.to_string(),
        line: 0,
        failed: false,
    }
}

impl<R: BufRead> Iterator for RecordLines<R> {
    type Item = Result<RecordLine>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut raw = Vec::new();
        match self.reader.read_until(b'\n', &mut raw) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(Error::io(&self.origin, e)));
            }
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        self.line += 1;
        let content = match std::str::from_utf8(&raw) {
            Ok(text) => parse_line(text, self.line, &self.origin),
            Err(e) => LineContent::Bad(LineError {
                origin: self.origin.clone(),
                line: self.line,
                message: format!("not valid UTF-8 (column {})", e.valid_up_to() + 1),
            }),
        };
        Some(Ok(RecordLine {
            line: self.line,
            raw,
            content,
        }))
    }
}

fn decode_record(text: &str) -> std::result::Result<CandidateRecord, String> {
    // serde also reads a struct from a JSON array; a record line must be an object.
    let start = text.trim_start();
    if !start.starts_with('{') {
        return Err(format!(
            "expected a JSON object (one record per line) (column {})",
            text.len() - start.len() + 1
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let record: CandidateRecord =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = field_path(e.path());
            let message = json_message(e.inner());
            if path.is_empty() {
                message
            } else {
                format!("field `{path}`: {message}")
            }
        })?;
    deserializer
        .end()
        .map_err(|e| format!("unexpected text after the record (column {})", e.column()))?;
    check_record(&record)?;
    Ok(record)
}

/// A field path such as `params.temperature` or `logprobs[3]`, up to the first unknown segment.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    text
}

/// serde_json's message with its position as a column only (a record is one line).
fn json_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    format!("{message} (column {})", error.column())
}

/// The checks serde cannot make: the schema tag, ids, integer ranges, finite log-probabilities,
/// valid parameters and a consistent choice.
fn check_record(record: &CandidateRecord) -> std::result::Result<(), String> {
    if !is_known_schema(&record.schema) {
        return Err(format!(
            "field `schema`: expected \"{RECORD_SCHEMA}\" or \"{RECORD_SCHEMA_V1}\", got {:?}",
            record.schema
        ));
    }
    let required = [
        ("record_id", &record.record_id),
        ("story_id", &record.story_id),
        ("created_at", &record.created_at),
    ];
    for (name, value) in required {
        if value.trim().is_empty() {
            return Err(format!("field `{name}`: must not be empty"));
        }
    }
    if record
        .parent_record_id
        .as_deref()
        .is_some_and(str::is_empty)
    {
        return Err("field `parent_record_id`: must be null or a record id, got \"\"".into());
    }
    if record.step == 0 {
        return Err("field `step`: steps start at 1, got 0".into());
    }
    if record.candidate == 0 {
        return Err("field `candidate`: candidates are numbered from 1, got 0".into());
    }
    if record.seed >= MAX_EXACT_INTEGER {
        return Err(format!(
            "field `seed`: must be below 2^53 = {MAX_EXACT_INTEGER}, got {}",
            record.seed
        ));
    }
    if let Some(index) = record.logprobs.iter().position(|p| !p.is_finite()) {
        return Err(format!(
            "field `logprobs[{index}]`: must be finite, got {}",
            record.logprobs[index]
        ));
    }
    if record.logprobs.len() != record.output_ids.len() {
        return Err(format!(
            "field `logprobs`: {} values for {} `output_ids`",
            record.logprobs.len(),
            record.output_ids.len()
        ));
    }
    record
        .params
        .validate()
        .map_err(|e| format!("field `params`: {e}"))?;
    check_choice(record)
}

fn check_choice(record: &CandidateRecord) -> std::result::Result<(), String> {
    let chosen_by = record.chosen_by.as_deref();
    if record.chosen {
        if chosen_by.is_none_or(|by| by.trim().is_empty()) {
            return Err("field `chosen_by`: a chosen record must say who chose it".into());
        }
        if record.chosen_at.is_none() {
            return Err("field `chosen_at`: a chosen record must say when it was chosen".into());
        }
    } else {
        if chosen_by.is_some() {
            return Err("field `chosen_by`: set on a record that is not chosen".into());
        }
        if record.chosen_at.is_some() {
            return Err("field `chosen_at`: set on a record that is not chosen".into());
        }
    }
    Ok(())
}

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
enum PairSkip {
    /// Both texts are the same: no preference to learn.
    IdenticalText,
    /// The other candidate continues a different text: not a comparison.
    OtherPrompt,
}

fn pair_skip(chosen: &CandidateRecord, other: &CandidateRecord) -> Option<PairSkip> {
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
                prompt: chosen.input_text.clone(),
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
    /// Builds the files from records (expected to have distinct ids, as a merge gives).
    pub fn build(records: &[CandidateRecord]) -> Self {
        let pairs = preference_pairs(records);
        let unpaired = unpaired_examples(records);
        let mut card = dataset_card(records, &pairs);
        add_unpaired_to_card(&mut card, &unpaired);
        Self {
            records_jsonl: records_jsonl(records),
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

const RECORD_FIELDS: &[(&str, &str, &str)] = &[
    ("schema", "string", "`storywriter.record/2` (`storywriter.record/1` in older logs, without the fields from `display_position` on)."),
    ("record_id", "string", "Unique id of the candidate (32 hex digits)."),
    ("story_id", "string", "The story it belongs to."),
    ("step", "int", "Story step it was generated for (1 = continuing the opening text)."),
    ("candidate", "int", "Its position among the round's candidates (1, 2, 3)."),
    ("parent_record_id", "string or null", "The chosen candidate of the previous step that it continues; null at step 1."),
    ("input_text", "string", "The story text it continues."),
    ("input_ids", "list of int", "Token ids fed to the model (after any context trimming)."),
    ("params", "struct", "Sampling parameters: `greedy`, `temperature`, `top_k` (0 = off), `top_p`, `min_p`, `typical_p`, `repetition_penalty`, `max_new_tokens`, `stop_at_sentence_end`, with Hugging Face `generate` semantics."),
    ("policy", "string", "How the parameters were picked (`step-mean`, `step-sample`, `coupled-random`, `fixed`, `manual`)."),
    ("param_table", "string", "The per-step table the policy read (`bundled table`, a URL, `table learned from my N choices`, a file); null when it read none, or in records older than this field."),
    ("seed", "int", "RNG seed (< 2^53): model, input ids, parameters and seed reproduce the candidate."),
    ("output_text", "string", "The generated continuation."),
    ("output_ids", "list of int", "Generated token ids (the end-of-sequence id included when produced)."),
    ("logprobs", "list of float", "The model's log-probability of each generated id, before sampling warpers."),
    ("finish_reason", "string", "`eos`, `length` (max_new_tokens reached), `sentence_end` or `stopped`."),
    ("chosen", "bool", "Whether the writer (or a picker) took this candidate."),
    ("chosen_by", "string or null", "`human` or the picker's name; null when not chosen."),
    ("created_at", "string", "When it was generated (RFC 3339, UTC)."),
    ("chosen_at", "string or null", "When it was chosen; null when not chosen."),
    ("model", "struct", "The generating model: `name`, `format` (`gguf`/`safetensors`), `quantization`, `content_hash` (a SHA-256 fingerprint of the files)."),
    ("app_version", "string", "The app that generated it, e.g. `storywriter 0.1.0`."),
    ("display_position", "int or null", "Where it was shown among the round's candidates (1 = first). Policies are assigned to positions in a random order per round, so position and policy effects can be separated."),
    ("mix_slot", "int or null", "Its policy's slot in the policy mix (1-based), before the shuffle."),
    ("order_seed", "int or null", "Seed of the round's shuffle of policies over positions (every order has probability 1/k!)."),
    ("log_propensity", "float or null", "Natural log of the probability (density, for continuous parameters) with which the policy drew the parameters: 0 for deterministic policies, null where unknown (`coupled-random`, `manual`). For off-policy evaluation."),
    ("decision_ms", "int or null", "Milliseconds from the end of the round to the pick, on the chosen candidate."),
    ("rejected_all_at", "string or null", "When the writer rejected the whole round (asked for new candidates) without picking."),
    ("edited_at", "string or null", "When the story was edited by hand after this candidate was picked."),
    ("edited_text", "string or null", "The story text after that edit."),
];

const PAIR_FIELDS: &[(&str, &str, &str)] = &[
    (
        "prompt",
        "string",
        "The story text both candidates continue.",
    ),
    ("chosen", "string", "The continuation that was taken."),
    (
        "rejected",
        "string",
        "A continuation of the same round that was not.",
    ),
    ("story_id", "string", "The story."),
    ("step", "int", "The story step."),
    (
        "parent_record_id",
        "string or null",
        "The record both continue; null at step 1.",
    ),
    (
        "chosen_record_id",
        "string",
        "`record_id` of the chosen candidate in `records`.",
    ),
    (
        "rejected_record_id",
        "string",
        "`record_id` of the rejected candidate in `records`.",
    ),
    (
        "chosen_params",
        "struct",
        "Sampling parameters of the chosen candidate (as `params` in `records`).",
    ),
    (
        "rejected_params",
        "struct",
        "Sampling parameters of the rejected candidate.",
    ),
    ("chosen_by", "string", "`human` or the picker's name."),
    (
        "model",
        "struct",
        "The model that generated the chosen candidate (as `model` in `records`).",
    ),
];

/// A statistic of the card's parameter table, read from a record.
type RecordStat = fn(&CandidateRecord) -> f64;

const PARAM_STATS: &[(&str, RecordStat)] = &[
    ("temperature", |r| f64::from(r.params.temperature)),
    ("top_k", |r| r.params.top_k as f64),
    ("top_p", |r| f64::from(r.params.top_p)),
    ("min_p", |r| f64::from(r.params.min_p)),
    ("typical_p", |r| f64::from(r.params.typical_p)),
    ("repetition_penalty", |r| {
        f64::from(r.params.repetition_penalty)
    }),
    ("max_new_tokens", |r| r.params.max_new_tokens as f64),
    ("greedy (share)", |r| f64::from(u8::from(r.params.greedy))),
    ("stop_at_sentence_end (share)", |r| {
        f64::from(u8::from(r.params.stop_at_sentence_end))
    }),
    ("generated tokens", |r| r.output_ids.len() as f64),
];

fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Eos => "eos",
        FinishReason::Length => "length",
        FinishReason::SentenceEnd => "sentence_end",
        FinishReason::Stopped => "stopped",
    }
}

/// Hugging Face's `size_categories` bucket of a row count.
fn size_category(rows: usize) -> &'static str {
    const BUCKETS: [(u64, &str); 10] = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
        (10_000_000_000, "1B<n<10B"),
        (100_000_000_000, "10B<n<100B"),
        (1_000_000_000_000, "100B<n<1T"),
    ];
    BUCKETS
        .iter()
        .find(|(limit, _)| (rows as u64) < *limit)
        .map_or("n>1T", |(_, name)| name)
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Population mean and standard deviation, as `mean ± std` with three decimals.
fn mean_std(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    format!("{mean:.3} ± {:.3}", variance.sqrt())
}

/// The dataset card (`README.md`): YAML front matter with the two configs (`records`,
/// `preferences`) and the Hub's metadata, how pairs are made, every field, and summary
/// statistics (stories, rounds, choices by human and pickers, parameters of chosen vs rejected
/// candidates, finish reasons, models, steps).
pub fn dataset_card(records: &[CandidateRecord], pairs: &[PreferencePair]) -> String {
    let rounds = rounds(records);
    let stories: BTreeSet<&str> = records.iter().map(|r| r.story_id.as_str()).collect();
    let mut chosen_once = Vec::new();
    let mut rejected = Vec::new();
    let (mut no_choice, mut several_choices) = (0, 0);
    let (mut identical, mut other_prompt) = (0, 0);
    for round in rounds.values() {
        match round.chosen()[..] {
            [] => no_choice += 1,
            [chosen] => {
                chosen_once.push(chosen);
                for other in round.records.iter().filter(|r| !r.chosen) {
                    rejected.push(*other);
                    match pair_skip(chosen, other) {
                        Some(PairSkip::IdenticalText) => identical += 1,
                        Some(PairSkip::OtherPrompt) => other_prompt += 1,
                        None => {}
                    }
                }
            }
            _ => several_choices += 1,
        }
    }

    let mut out = String::new();
    out.push_str(&format!(
        "---\npretty_name: Storywriter story candidates and writer preferences\n\
         license: unknown\nlanguage:\n- en\ntask_categories:\n- text-generation\n\
         tags:\n- storywriter\n- creative-writing\n- preference\n- dpo\n- reward-modeling\n\
         - bloom\nsize_categories:\n- {}\nconfigs:\n\
         - config_name: records\n  data_files:\n  - split: train\n    path: {RECORDS_FILE}\n",
        size_category(records.len())
    ));
    // `datasets` cannot load an empty JSON Lines file: list the pairs only when there are some.
    if !pairs.is_empty() {
        out.push_str(&format!(
            "- config_name: preferences\n  data_files:\n  - split: train\n    path: {PREFERENCES_FILE}\n"
        ));
    }
    out.push_str("---\n\n");
    out.push_str(
        "# Storywriter: story candidates and writer preferences\n\n\
         At every step of a story, storywriter generates three candidate continuations with \
         BLOOM, each with its own sampling parameters, and the writer (or an automatic picker) \
         takes one. Every candidate is recorded with everything needed to replay it.\n\n\
         `license: unknown` and `language: en` are placeholders: set them to the terms and \
         languages of the stories before publishing this dataset.\n\n\
         ## Configs\n\n| config | file | rows | content |\n|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| `records` | `{RECORDS_FILE}` | {} | every candidate |\n\
         | `preferences` | `{PREFERENCES_FILE}` | {} | (prompt, chosen, rejected) pairs for reward models and DPO{} |\n\n",
        records.len(),
        pairs.len(),
        if pairs.is_empty() {
            " (none yet: no round has exactly one choice, so the config is not listed)"
        } else {
            ""
        }
    ));
    out.push_str(
        "```python\nfrom datasets import load_dataset\n\
         prefs = load_dataset(\"path/to/this/directory\", \"preferences\", split=\"train\")\n\
         records = load_dataset(\"json\", data_files=\"path/to/this/directory/records.jsonl\", split=\"train\")\n```\n\n\
         A *round* is the set of candidates generated for one story step from one parent record \
         (several generations when the writer asked again). Each round with exactly one chosen \
         candidate gives one pair per other candidate. Rounds without a choice, and rounds \
         with several (the writer went back and branched), give none; neither does a candidate \
         whose text is identical to the chosen one, nor one that continues a different text.\n\n\
         ## Fields\n\n### records\n\n",
    );
    field_table(&mut out, RECORD_FIELDS);
    out.push_str("\n### preferences\n\n");
    field_table(&mut out, PAIR_FIELDS);

    out.push_str("\n## Statistics\n\n| | count |\n|---|---|\n");
    let max_step = records.iter().map(|r| r.step).max().unwrap_or(0);
    let chosen_total = records.iter().filter(|r| r.chosen).count();
    let counts = [
        ("stories", stories.len()),
        ("records (candidates)", records.len()),
        ("rounds", rounds.len()),
        ("rounds with one choice", chosen_once.len()),
        ("rounds without a choice", no_choice),
        ("rounds with several choices (no pairs)", several_choices),
        ("longest story (steps)", max_step as usize),
        ("chosen candidates", chosen_total),
        ("preference pairs", pairs.len()),
        ("pairs skipped: identical texts", identical),
        ("pairs skipped: different input texts", other_prompt),
    ];
    for (name, count) in counts {
        out.push_str(&format!("| {name} | {count} |\n"));
    }

    out.push_str("\n### Who chose\n\n| chosen by | kind | candidates |\n|---|---|---|\n");
    let mut choosers: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records.iter().filter(|r| r.chosen) {
        *choosers
            .entry(record.chosen_by.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    for (name, count) in &choosers {
        let kind = if *name == "human" { "human" } else { "picker" };
        out.push_str(&format!("| {} | {kind} | {count} |\n", cell(name)));
    }

    out.push_str(&format!(
        "\n### Parameters of chosen and rejected candidates\n\n\
         Over the rounds with one choice: {} chosen and {} rejected candidates \
         (mean ± population standard deviation).\n\n\
         | parameter | chosen | rejected |\n|---|---|---|\n",
        chosen_once.len(),
        rejected.len()
    ));
    for (name, stat) in PARAM_STATS {
        let chosen: Vec<f64> = chosen_once.iter().map(|r| stat(r)).collect();
        let others: Vec<f64> = rejected.iter().map(|r| stat(r)).collect();
        out.push_str(&format!(
            "| {name} | {} | {} |\n",
            mean_std(&chosen),
            mean_std(&others)
        ));
    }

    out.push_str(
        "\n### Finish reasons\n\n| finish reason | candidates | chosen |\n|---|---|---|\n",
    );
    let mut reasons: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for record in records {
        let entry = reasons
            .entry(finish_reason_name(record.finish_reason))
            .or_default();
        entry.0 += 1;
        entry.1 += usize::from(record.chosen);
    }
    for (reason, (all, chosen)) in &reasons {
        out.push_str(&format!("| {reason} | {all} | {chosen} |\n"));
    }

    out.push_str(
        "\n### Models\n\n| model | format | quantization | content hash | candidates |\n\
         |---|---|---|---|---|\n",
    );
    let mut models: BTreeMap<[&str; 4], usize> = BTreeMap::new();
    for record in records {
        let model = &record.model;
        let key = [
            model.name.as_str(),
            model.format.as_str(),
            model.quantization.as_str(),
            model.content_hash.as_str(),
        ];
        *models.entry(key).or_default() += 1;
    }
    for ([name, format, quantization, hash], count) in &models {
        out.push_str(&format!(
            "| {} | {} | {} | `{}` | {count} |\n",
            cell(name),
            cell(format),
            cell(quantization),
            cell(hash)
        ));
    }

    out.push_str("\n### Steps\n\n| step | rounds | candidates | chosen |\n|---|---|---|---|\n");
    let mut steps: BTreeMap<u32, (usize, usize, usize)> = BTreeMap::new();
    for ((_, step, _), round) in &rounds {
        let entry = steps.entry(*step).or_default();
        entry.0 += 1;
        entry.1 += round.records.len();
        entry.2 += round.records.iter().filter(|r| r.chosen).count();
    }
    for (step, (round_count, candidates, chosen)) in &steps {
        out.push_str(&format!(
            "| {step} | {round_count} | {candidates} | {chosen} |\n"
        ));
    }

    let created = records.iter().map(|r| r.created_at.as_str());
    if let (Some(first), Some(last)) = (created.clone().min(), created.max()) {
        let versions: BTreeSet<&str> = records.iter().map(|r| r.app_version.as_str()).collect();
        out.push_str(&format!(
            "\nGenerated from {} to {} by {}.\n",
            cell(first),
            cell(last),
            versions
                .iter()
                .map(|v| cell(v))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}
