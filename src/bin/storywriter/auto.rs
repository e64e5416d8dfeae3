//! `storywriter auto`: whole stories without a person (see `storywriter::autopilot`), appended
//! to a log that a restart resumes: stories already complete are skipped, a story cut off
//! continues from its last logged record, and nothing logged is generated again.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use storywriter::autopilot::{
    story_id, write_story, AutoPlan, Chooser, PickerChooser, PositionChooser, RandomChooser,
    StepMeanChooser,
};
use storywriter::data::params::read_table;
use storywriter::data::story::Story;
use storywriter::engine::loader::LoadedModel;
use storywriter::picker::simulated::{Rule, SimulatedWriter};

/// Options of `storywriter auto`.
#[derive(Args)]
pub struct AutoArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The opening of every story.
    #[arg(long, conflicts_with = "prompts", required_unless_present = "prompts")]
    prompt: Option<String>,
    /// A file of openings, one per line; story i opens with line i mod their number.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Steps per story.
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// Stories in the whole run (all shards together).
    #[arg(long)]
    stories: u64,
    /// Who picks: `picker:FILE`, `step-mean`, `random`, `position[:N]` or `simulated:RULE`
    /// (pronoun, less-repetition, temperature-0.8, random; for tests and benchmarks).
    #[arg(long, default_value = "step-mean")]
    chooser: String,
    /// The JSONL log records are appended to; running again resumes the run.
    #[arg(long)]
    log: PathBuf,
    /// `I/N`: write only stories i with i mod N = I (I from 0), for N machines.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Run seed: story i is the same on any machine and in any shard.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Parameter table: `bundled`, a file or an http(s) URL (an invalid one is an error).
    #[arg(long, default_value = "bundled")]
    table: String,
    /// Policy of each candidate (shuffled over positions every round).
    #[arg(long, default_value = "step-mean,step-sample,coupled-random")]
    policy: String,
    /// Stories written at the same time, each on a thread of its own (default: one per
    /// core). Every story is the same whatever this is; only the log's line order changes.
    #[arg(long)]
    jobs: Option<usize>,
    #[command(flatten)]
    pub cache: crate::model_cmds::CacheArgs,
}

fn parse_shard(spec: &str) -> Result<(u64, u64)> {
    let parsed = spec
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard {spec:?}: expected I/N with 0 <= I < N, e.g. 0/4"),
    }
}

fn chooser(spec: &str) -> Result<Box<dyn Chooser>> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    Ok(match (kind, arg) {
        ("step-mean", "") => Box::new(StepMeanChooser),
        ("random", "") => Box::new(RandomChooser),
        ("position", "") => Box::new(PositionChooser(1)),
        ("position", n) => Box::new(PositionChooser(
            n.parse()
                .with_context(|| format!("--chooser {spec}: not a position"))?,
        )),
        ("picker", file) if !file.is_empty() => Box::new(PickerChooser {
            picker: crate::picker_cmd::load_picker(file.as_ref())?,
            name: format!("picker:{file}"),
        }),
        ("simulated", rule) => Box::new(SimulatedWriter {
            rule: Rule::from_name(rule)?,
            noise: 0.1,
        }),
        _ => bail!(
            "--chooser {spec:?}: expected picker:FILE, step-mean, random, position[:N] or \
             simulated:RULE"
        ),
    })
}

/// Ends the log with a line break if a crash cut its last line, so that the next record
/// starts a line of its own (the cut line is reported and skipped when read).
fn end_last_line(log: &mut std::fs::File) -> Result<()> {
    let length = log.seek(SeekFrom::End(0))?;
    if length > 0 {
        log.seek(SeekFrom::Start(length - 1))?;
        let mut last = [0u8];
        log.read_exact(&mut last)?;
        if last[0] != b'\n' {
            log.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Runs the autopilot.
pub fn run(args: AutoArgs, model: &LoadedModel) -> Result<()> {
    let (shard, shards) = parse_shard(&args.shard)?;
    let prompts: Vec<String> = match (&args.prompt, &args.prompts) {
        (Some(prompt), _) => vec![prompt.clone()],
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        (None, None) => bail!("give --prompt or --prompts"),
    };
    if prompts.is_empty() {
        bail!("no opening: the prompts file has no non-empty line");
    }
    let chooser_name = chooser(&args.chooser)?.name();
    let (table, warnings) = read_table(&args.table, model.model.config().vocab_size)?;
    let table_name = args.table.clone();
    for warning in &warnings {
        eprintln!("warning: {}: {}", warning.path, warning.message);
    }
    let plan = AutoPlan {
        table,
        table_name,
        mix: args.policy.parse()?,
        steps: args.steps,
        seed: args.seed,
    };
    let logged = crate::write::read_log(&args.log)?;
    let mut log = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("cannot open the log {}", args.log.display()))?;
    end_last_line(&mut log)?;

    let indices: Vec<u64> = (shard..args.stories).step_by(shards as usize).collect();
    let resumed: Vec<Option<Story>> = indices
        .iter()
        .map(|&i| Story::from_records(&story_id(args.seed, i), &logged))
        .collect();
    let done: usize = resumed
        .iter()
        .flatten()
        .map(|s| s.path.len().min(args.steps as usize))
        .sum();
    let total = indices.len() as u64 * u64::from(args.steps);
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} rounds · {per_sec} · eta {eta} · {msg}",
    )?);
    bar.set_position(done as u64);
    if done > 0 {
        bar.println(format!(
            "resuming: {done} of {total} rounds already in {}",
            args.log.display()
        ));
    }
    if args.jobs == Some(0) {
        bail!("--jobs 0: give at least 1");
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(indices.len().max(1));
    // Stories not yet taken by a job, and the log every job appends to.
    let queue = Mutex::new(indices.iter().copied().zip(resumed));
    let log = Mutex::new(log);
    let write_stories = || -> Result<()> {
        let mut chooser = chooser(&args.chooser)?;
        loop {
            let Some((index, story)) = queue.lock().expect("no job panicked").next() else {
                return Ok(());
            };
            let prompt = &prompts[(index % prompts.len() as u64) as usize];
            bar.set_message(format!("story {index}"));
            let written = write_story(
                model,
                &plan,
                prompt,
                index,
                story,
                chooser.as_mut(),
                &mut |records| {
                    let mut log = log.lock().expect("no job panicked");
                    crate::write::append(&mut log, &args.log, records)
                        .map_err(|e| storywriter::Error::Invalid(format!("{e:#}")))?;
                    bar.inc(records.iter().filter(|r| r.chosen).count() as u64);
                    Ok(())
                },
            );
            if let Err(e) = written {
                // The other jobs stop after their current story.
                queue
                    .lock()
                    .expect("no job panicked")
                    .by_ref()
                    .for_each(drop);
                return Err(e.into());
            }
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs).map(|_| scope.spawn(write_stories)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a story job panicked"))
            .collect::<Result<Vec<()>>>()
    })?;
    bar.finish_and_clear();
    crate::output::print_json(serde_json::json!({
        "stories": indices.len(),
        "rounds": total,
        "resumed_rounds": done,
        "shard": format!("{shard}/{shards}"),
        "chooser": chooser_name,
        "jobs": jobs,
        "log": args.log.display().to_string(),
    }))
}
