//! Reading record logs: every line checked, each bad one reported with its number and a reason naming the field.

use std::fmt;
use std::io::BufRead;

use crate::data::records::{is_known_schema, CandidateRecord, RECORD_SCHEMA, RECORD_SCHEMA_V1};
use crate::error::{Error, Result};

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
/// valid parameters and a consistent choice; the error names the field.
pub fn check_record(record: &CandidateRecord) -> std::result::Result<(), String> {
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
