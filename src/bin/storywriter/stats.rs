//! `storywriter stats`: streams selection logs (JSON lines or one JSON array per file) into a
//! [`StatsBuilder`] and writes the per-step parameter table. Bad records are counted and the
//! first few shown with their file and line (or array element); they never stop the run.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;
use storywriter::data::stats::{
    ReadFields, StatsBuilder, StatsOptions, DEFAULT_MAX_STEPS, DEFAULT_PRIOR_STRENGTH,
};
use web_time::Instant;

/// Bad records shown on stderr; the rest are only counted.
const BAD_SHOWN: u64 = 10;

/// Options of `storywriter stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Log files: JSON lines or one JSON array each; our records or mongoexport output.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Where to write the table (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Pseudo-count pulling steps with few chosen candidates toward the global row (0: off).
    #[arg(long, default_value_t = DEFAULT_PRIOR_STRENGTH)]
    prior_strength: f64,
    /// Steps 1..=N get rows; chosen candidates at later steps count in the global row only.
    #[arg(long, default_value_t = DEFAULT_MAX_STEPS)]
    max_steps: u32,
}

/// The builder plus the bad-record bookkeeping of one run.
struct Run {
    builder: StatsBuilder,
    bad: u64,
    bar: ProgressBar,
}

impl Run {
    fn accept(&mut self, value: &Value, place: impl FnOnce() -> String) {
        if let Err(e) = self.builder.add_json(value) {
            self.reject(place(), format_args!("{e}; record skipped"));
        }
    }

    fn reject(&mut self, place: String, problem: impl std::fmt::Display) {
        self.bad += 1;
        if self.bad <= BAD_SHOWN {
            self.bar
                .suspend(|| eprintln!("warning: {place}: {problem}"));
        }
    }
}

/// Runs `storywriter stats`.
pub fn run(args: StatsArgs) -> Result<()> {
    let start = Instant::now();
    let builder = StatsBuilder::new(StatsOptions {
        prior_strength: args.prior_strength,
        max_steps: args.max_steps,
    })?;
    let mut total_bytes = 0;
    for path in &args.logs {
        total_bytes += std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
    }
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg} ({eta})",
        )
        .expect("valid template"),
    );
    let mut run = Run {
        builder,
        bad: 0,
        bar: bar.clone(),
    };
    for path in &args.logs {
        bar.set_message(path.display().to_string());
        read_log(path, &mut run)?;
    }
    bar.finish_and_clear();
    if run.bad > BAD_SHOWN {
        eprintln!(
            "warning: {} more bad records not shown",
            run.bad - BAD_SHOWN
        );
    }
    let builder = &run.builder;
    if builder.untabulated() > 0 {
        eprintln!(
            "note: {} chosen candidates at steps above {} count only in the global row",
            builder.untabulated(),
            args.max_steps
        );
    }
    let (records, chosen, copies) = (builder.records(), builder.chosen(), builder.copies());
    let names: Vec<String> = args.logs.iter().map(|p| p.display().to_string()).collect();
    let mut description = format!("chosen candidates of {}", names.join(", "));
    if run.bad > 0 {
        description += &format!(" ({} bad records skipped)", run.bad);
    }
    let table = run.builder.finish(&description)?;
    let json = table.to_json_pretty() + "\n";
    match &args.output {
        Some(path) => {
            let tmp = path.with_extension("json.partial");
            std::fs::write(&tmp, json)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => std::io::stdout().lock().write_all(json.as_bytes())?,
    }
    eprintln!(
        "stats: {records} records ({chosen} chosen, {copies} repeated copies, {} bad) from {} \
         files in {:.2} s; {} steps tabulated",
        run.bad,
        args.logs.len(),
        start.elapsed().as_secs_f64(),
        table.steps.len()
    );
    Ok(())
}

/// Feeds one file to the run: JSON lines, or a JSON array when its first non-blank character
/// is `[`. A file that is neither is an error naming it.
fn read_log(path: &Path, run: &mut Run) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 16, run.bar.wrap_read(file));
    let (first, blank_lines) =
        skip_blank_start(&mut reader).with_context(|| format!("cannot read {}", path.display()))?;
    match first {
        None => Ok(()),
        Some(b'[') => read_array(path, reader, run),
        Some(b'{') => read_lines(path, reader, blank_lines, run),
        Some(byte) => bail!(
            "{}: not JSON lines nor a JSON array (it starts with {:?})",
            path.display(),
            char::from(byte)
        ),
    }
}

/// Skips a byte-order mark and leading whitespace; returns the first other byte (not consumed)
/// and the number of newlines skipped.
fn skip_blank_start(reader: &mut impl BufRead) -> std::io::Result<(Option<u8>, u64)> {
    let mut newlines = 0;
    let mut at_start = true;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok((None, newlines));
        }
        let skip = if at_start && buffer.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        at_start = false;
        let rest = &buffer[skip..];
        let blank = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        newlines += rest[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
        let first = rest.get(blank).copied();
        reader.consume(skip + blank);
        if first.is_some() {
            return Ok((first, newlines));
        }
    }
}

/// One JSON value per line; blank lines are skipped. If no line parses, the file is not JSON
/// lines: an error.
fn read_lines(
    path: &Path,
    mut reader: impl BufRead,
    blank_lines: u64,
    run: &mut Run,
) -> Result<()> {
    let mut line = Vec::new();
    let mut number = blank_lines;
    let mut parsed = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let place = || format!("{} line {number}", path.display());
        let mut deserializer = serde_json::Deserializer::from_slice(&line);
        let parsed_line = ReadFields
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        match parsed_line {
            Ok(value) => {
                parsed += 1;
                run.accept(&value, place);
            }
            Err(e) => run.reject(place(), format_args!("not JSON ({e}); line skipped")),
        }
    }
    if parsed == 0 {
        bail!(
            "{}: not JSON lines (no line is a JSON value) nor a JSON array",
            path.display()
        );
    }
    Ok(())
}

/// One JSON array, read element by element. A syntax error inside it loses the rest of the file
/// (reported, counted as one bad record); before any element, it is an error.
fn read_array(path: &Path, reader: impl Read, run: &mut Run) -> Result<()> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let mut elements = 0u64;
    let outcome = ElementFeeder {
        path,
        run: &mut *run,
        elements: &mut elements,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if elements == 0 => bail!("{}: not a JSON array ({e})", path.display()),
        Err(e) => {
            run.reject(
                format!("{} element {elements}", path.display()),
                format_args!("{e}; the rest of the file is skipped"),
            );
            Ok(())
        }
    }
}

/// Hands each element of a JSON array to the run as soon as it is parsed.
struct ElementFeeder<'a> {
    path: &'a Path,
    run: &'a mut Run,
    elements: &'a mut u64,
}

impl<'de> DeserializeSeed<'de> for ElementFeeder<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ElementFeeder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element_seed(ReadFields)? {
            let index = *self.elements;
            *self.elements += 1;
            self.run.accept(&value, || {
                format!("{} element {index}", self.path.display())
            });
        }
        Ok(())
    }
}
