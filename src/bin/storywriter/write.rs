//! `storywriter write`: the interactive terminal writer, the native twin of the web app.
//!
//! Every round of candidates is appended to a JSONL log before it is shown, and every choice is
//! appended as the chosen version of its record, so a crash or Ctrl-C loses nothing; starting
//! again with the same log resumes the story where it stopped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storywriter::data::dataset::read_records;
use storywriter::data::design::{plan_round, Display};
use storywriter::data::params::{read_table, PolicyMix};
use storywriter::data::records::{new_seed, CandidateRecord};
use storywriter::data::story::{PlannedCandidate, Story};
use storywriter::engine::generate::CachePool;
use storywriter::engine::loader::LoadedModel;
use storywriter::session::write_round;

/// Options of `storywriter write`.
#[derive(Args)]
pub struct WriteArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Opening text of a new story (asked for when missing).
    #[arg(long)]
    pub prompt: Option<String>,
    /// JSONL log the candidate records are appended to; a story in it is resumed.
    #[arg(long, default_value = "story.jsonl")]
    pub log: PathBuf,
    /// Start a new story even when the log holds one.
    #[arg(long)]
    pub new: bool,
    /// Parameter table: `bundled`, a file or an http(s) URL (an invalid one is an error).
    #[arg(long, default_value = "bundled")]
    pub table: String,
    /// Policy of each candidate, comma separated (step-mean, step-sample, coupled-random, fixed).
    #[arg(long, default_value = "step-mean,step-sample,step-sample")]
    pub policy: String,
    /// Seed of the candidates' parameters and RNG seeds (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub cache: crate::model_cmds::CacheArgs,
}

const HELP: &str = "1/2/3… pick · r regenerate · u undo · + TEXT add your own text · q quit";

/// Runs the writer on stdin/stdout until `q` or the end of input.
pub fn run(args: WriteArgs, model: &LoadedModel) -> Result<()> {
    let vocab = model.model.config().vocab_size;
    let (table, warnings) = read_table(&args.table, vocab)?;
    let table_name = args.table.clone();
    for warning in &warnings {
        eprintln!("warning: {}: {}", warning.path, warning.message);
    }
    let mix: PolicyMix = args.policy.parse()?;
    let mut seeds = ChaCha8Rng::seed_from_u64(args.seed.unwrap_or_else(new_seed));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();

    // The log's records are read whole; the story keeps each input once, shared along the
    // story, and the rest is let go.
    let resumed = if args.new {
        None
    } else {
        let logged = read_log(&args.log)?;
        logged
            .last()
            .and_then(|last| Story::from_records(&last.story_id, &logged))
    };
    let mut story = match resumed {
        Some(story) => {
            eprintln!(
                "resuming story {} from {} ({} records)",
                story.id,
                args.log.display(),
                story.records.len()
            );
            story
        }
        None => {
            let prompt = match args.prompt {
                Some(prompt) => prompt,
                None => {
                    print!("Opening text: ");
                    std::io::stdout().flush()?;
                    let mut line = String::new();
                    input.read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if prompt.trim().is_empty() {
                bail!("the opening text is empty");
            }
            Story::new(&prompt)
        }
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("cannot open the log {}", args.log.display()))?;

    // The caches of the last rounds: a round runs only the tokens they do not hold.
    let mut pool = CachePool::default();
    println!("{HELP}");
    loop {
        if story.pending.is_empty() {
            let round_seed: u64 = seeds.random::<u64>() >> 11;
            let step = story.next_step();
            let planned = plan_round(
                &table,
                &table_name,
                &mix,
                step,
                round_seed,
                Display::Shuffled,
            );
            let records = generate_round(&mut story, model, &mut pool, &planned)?;
            append(&mut log, &args.log, &records)?;
        }
        show(&story);
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let command = line.trim_end_matches(['\r', '\n']);
        match command.trim() {
            "q" => break,
            "r" => {
                let rejected = story.reject_all();
                append(&mut log, &args.log, &rejected)?;
            }
            "u" => {
                if let Err(e) = story.undo() {
                    println!("{e}");
                }
            }
            choice if choice.parse::<usize>().is_ok() => {
                let index: usize = choice.parse()?;
                match story.pending.get(index.wrapping_sub(1)).cloned() {
                    Some(id) => {
                        let record = story.choose(&id, "human")?.clone();
                        append(&mut log, &args.log, &[record])?;
                    }
                    None => println!("no candidate {index}; {HELP}"),
                }
            }
            _ => match command.strip_prefix('+') {
                Some(text) => {
                    let text = text.strip_prefix(' ').unwrap_or(text);
                    let edited = story.edit_after_pick(&format!("{}{}", story.text, text));
                    append(&mut log, &args.log, edited.as_slice())?;
                }
                None => println!("{HELP}"),
            },
        }
    }
    println!("\n{}\n", terminal_safe(&story.text));
    eprintln!("records are in {}", args.log.display());
    Ok(())
}

/// Generates a round with a spinner counting tokens.
fn generate_round(
    story: &mut Story,
    model: &LoadedModel,
    pool: &mut CachePool,
    planned: &[PlannedCandidate],
) -> Result<Vec<CandidateRecord>> {
    let spinner = ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
        "{spinner} writing {pos} tokens ({per_sec})",
    )?);
    let records = write_round(story, model, pool, planned, |_| {
        spinner.inc(1);
        ControlFlow::Continue(())
    })?;
    spinner.finish_and_clear();
    Ok(records)
}

/// Prints the end of the story and the pending candidates with their parameters.
fn show(story: &Story) {
    let text = terminal_safe(&story.text);
    let tail_start = text.char_indices().rev().nth(600).map_or(0, |(i, _)| i);
    println!(
        "\n── step {} ──\n{}{}",
        story.next_step(),
        if tail_start > 0 { "…" } else { "" },
        &text[tail_start..]
    );
    for (i, record) in story.pending_records().iter().enumerate() {
        let p = &record.params;
        println!(
            "\n[{}] {} · temperature {:.2} · top_k {} · top_p {:.2} · typical_p {:.2} · repetition {:.2} · {} tokens{}{}\n    {}",
            i + 1,
            record.policy,
            p.temperature,
            p.top_k,
            p.top_p,
            p.typical_p,
            p.repetition_penalty,
            record.output_ids.len(),
            if record.wrote_no_text() { " · no text" } else { "" },
            if record.chosen { " (chosen before)" } else { "" },
            terminal_safe(&record.output_text).replace('\n', "\n    "),
        );
    }
}

/// Model output is untrusted: control characters (escape sequences included) are shown as
/// their code, never sent to the terminal.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// Appends records to the log, one JSON line each, and syncs it to disk.
pub(crate) fn append(log: &mut File, path: &Path, records: &[CandidateRecord]) -> Result<()> {
    let mut lines = String::new();
    for record in records {
        lines.push_str(&serde_json::to_string(record)?);
        lines.push('\n');
    }
    log.write_all(lines.as_bytes())
        .and_then(|()| log.sync_data())
        .with_context(|| format!("cannot append to the log {}", path.display()))
}

/// Reads a log, reporting bad lines (kept in the file, skipped here) on stderr.
pub(crate) fn read_log(path: &Path) -> Result<Vec<CandidateRecord>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read the log {}", path.display())),
    };
    let (records, errors) = read_records(BufReader::new(file), &path.display().to_string())?;
    for error in errors {
        eprintln!("warning: skipped {error}");
    }
    Ok(records)
}
