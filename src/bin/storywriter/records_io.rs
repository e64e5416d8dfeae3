//! `export` and `import`: candidate record logs to a dataset directory or a record store.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use storywriter::data::dataset::{
    record_json_line, record_lines, DatasetFiles, LineContent, MergeOutcome, MergeReport, Merger,
};

/// Streams every log into `merger`, printing each bad line and conflict on stderr as
/// `file:line: reason`; returns the number of bad lines.
pub(crate) fn read_logs(logs: &[PathBuf], merger: &mut Merger) -> Result<usize> {
    let mut bad_lines = 0;
    for log in logs {
        let origin = log.display().to_string();
        let file = File::open(log).with_context(|| format!("cannot open {origin}"))?;
        for line in record_lines(BufReader::new(file), &origin) {
            let line = line?;
            match line.content {
                LineContent::Blank => {}
                LineContent::Bad(error) => {
                    eprintln!("{error}");
                    bad_lines += 1;
                }
                LineContent::Record(record) => {
                    let id = record.record_id.clone();
                    if let MergeOutcome::Conflict { fields } = merger.add(*record) {
                        eprintln!(
                            "{origin}:{}: record {id} differs from the one already \
                             read in {}; kept that one",
                            line.line,
                            fields.join(", ")
                        );
                    }
                }
            }
        }
    }
    Ok(bad_lines)
}

/// Writes `path` through a temporary file in the same directory, renamed over it.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        if let Ok(metadata) = std::fs::metadata(path) {
            file.set_permissions(metadata.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn report_json(report: &MergeReport, bad_lines: usize) -> serde_json::Value {
    json!({
        "records": report.records.len(),
        "added": report.added,
        "duplicates": report.duplicates,
        "updated": report.updated.len(),
        "conflicts": report.conflicts.len(),
        "bad_lines": bad_lines,
    })
}

/// `storywriter export`: merges the logs (as `import` would) and writes the dataset (the
/// records' hidden states only with `hidden_states`).
pub fn export(logs: &[PathBuf], output_dir: &Path, hidden_states: bool) -> Result<()> {
    let mut merger = Merger::new(Vec::new());
    let bad_lines = read_logs(logs, &mut merger)?;
    let report = merger.finish();
    if report.records.is_empty() {
        bail!("no valid records in the logs, nothing exported");
    }
    let files = DatasetFiles::build_with(&report.records, hidden_states);
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;
    for (name, contents) in files.files() {
        write_atomically(&output_dir.join(name), contents.as_bytes())?;
    }
    eprintln!(
        "exported {} records and {} preference pairs to {} ({} bad lines skipped, {} \
         duplicates, {} conflicts)",
        report.records.len(),
        files.pairs,
        output_dir.display(),
        bad_lines,
        report.duplicates,
        report.conflicts.len()
    );
    let mut summary = report_json(&report, bad_lines);
    summary["preference_pairs"] = files.pairs.into();
    summary["output_dir"] = output_dir.display().to_string().into();
    crate::output::print_json(summary)
}

/// A line of the store: its bytes, and the position of its record if it holds one.
struct StoreLine {
    raw: Vec<u8>,
    record: Option<usize>,
}

/// `storywriter import`: merges the logs into the store. Every line of the store is
/// written back unchanged, bad lines included (reported, never dropped), except records
/// that a log shows chosen since, which are rewritten; new records are appended.
pub fn import(logs: &[PathBuf], store: &Path) -> Result<()> {
    let origin = store.display().to_string();
    let mut lines = Vec::new();
    let mut existing = Vec::new();
    let mut store_bad_lines = 0;
    let exists = store.exists();
    if exists {
        let file = File::open(store).with_context(|| format!("cannot open {origin}"))?;
        for line in record_lines(BufReader::new(file), &origin) {
            let line = line?;
            let record = match line.content {
                LineContent::Blank => None,
                LineContent::Bad(error) => {
                    eprintln!("{error} (kept in the store as it is)");
                    store_bad_lines += 1;
                    None
                }
                LineContent::Record(record) => {
                    existing.push(*record);
                    Some(existing.len() - 1)
                }
            };
            lines.push(StoreLine {
                raw: line.raw,
                record,
            });
        }
    }
    let held = existing.len();
    let mut merger = Merger::new(existing);
    let bad_lines = read_logs(logs, &mut merger)?;
    let report = merger.finish();

    if !exists || report.added > 0 || !report.updated.is_empty() {
        let updated: HashSet<usize> = report.updated.iter().copied().collect();
        let mut contents = Vec::new();
        for line in &lines {
            match line.record {
                Some(index) if updated.contains(&index) => {
                    contents.extend_from_slice(record_json_line(&report.records[index]).as_bytes())
                }
                _ => {
                    contents.extend_from_slice(&line.raw);
                    contents.push(b'\n');
                }
            }
        }
        for record in &report.records[held..] {
            contents.extend_from_slice(record_json_line(record).as_bytes());
        }
        write_atomically(store, &contents)?;
    }
    eprintln!(
        "{origin}: {} added, {} duplicates, {} updated, {} conflicts, {} bad lines \
         skipped in the logs, {} bad lines kept in the store; {} records",
        report.added,
        report.duplicates,
        report.updated.len(),
        report.conflicts.len(),
        bad_lines,
        store_bad_lines,
        report.records.len()
    );
    let mut summary = report_json(&report, bad_lines);
    summary["store"] = origin.into();
    summary["store_bad_lines_kept"] = store_bad_lines.into();
    crate::output::print_json(summary)
}
