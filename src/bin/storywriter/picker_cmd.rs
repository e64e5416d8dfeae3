//! `storywriter picker train|eval|score`: the learned picker on candidate record logs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use storywriter::data::dataset::Merger;
use storywriter::data::records::CandidateRecord;
use storywriter::picker::features::group_rounds;
use storywriter::picker::train::TrainOptions;
use storywriter::picker::Picker;
use web_time::Instant;

/// The picker's subcommands.
#[derive(Subcommand)]
pub enum PickerCommand {
    /// Train a picker on logs (stories split into training and held-out test); writes
    /// FILE.safetensors and its card FILE.json, prints the card.
    Train(TrainArgs),
    /// Evaluate a picker on logs: top-1 and log loss against chance and the baselines.
    Eval(EvalArgs),
    /// Each round's probabilities under a picker, one JSON line per round.
    Score(ScoreArgs),
}

/// Options of `picker train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Candidate record logs (JSON Lines).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// The weights to write (.safetensors); the card goes next to it as .json.
    #[arg(long)]
    output: PathBuf,
    /// Seed of the story splits and the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// L2 penalty on the standardized weights.
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    l2: f64,
    /// Share of stories held out for testing.
    #[arg(long, default_value_t = TrainOptions::default().test_fraction)]
    test_fraction: f64,
}

/// Options of `picker eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Candidate record logs (JSON Lines), not the ones it was trained on.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// The picker (.safetensors, with its .json card next to it).
    #[arg(long)]
    picker: PathBuf,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Options of `picker score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// Candidate record logs (JSON Lines).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// The picker (.safetensors, with its .json card next to it).
    #[arg(long)]
    picker: PathBuf,
}

/// Runs a picker subcommand.
pub fn run(command: PickerCommand) -> Result<()> {
    match command {
        PickerCommand::Train(args) => train(args),
        PickerCommand::Eval(args) => eval(args),
        PickerCommand::Score(args) => score(args),
    }
}

/// The card's path: the weights' path with a `.json` extension.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Loads a picker and its card.
pub fn load_picker(path: &Path) -> Result<Picker> {
    let weights = std::fs::read(path)
        .with_context(|| format!("cannot read the picker {}", path.display()))?;
    let card_file = card_path(path);
    let card = std::fs::read_to_string(&card_file).with_context(|| {
        format!(
            "cannot read the picker's card {} (written next to it by `picker train`)",
            card_file.display()
        )
    })?;
    Ok(Picker::from_files(
        &weights,
        &card,
        &path.display().to_string(),
    )?)
}

/// Every valid record of the logs, merged by id (bad lines reported on stderr).
fn read_all(logs: &[PathBuf]) -> Result<Vec<CandidateRecord>> {
    let mut merger = Merger::new(Vec::new());
    crate::records_io::read_logs(logs, &mut merger)?;
    Ok(merger.finish().records)
}

fn train(args: TrainArgs) -> Result<()> {
    let records = read_all(&args.logs)?;
    let options = TrainOptions {
        seed: args.seed,
        l2: args.l2,
        test_fraction: args.test_fraction,
        ..TrainOptions::default()
    };
    let started = Instant::now();
    let picker = Picker::train(&records, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    let (weights, card) = picker.to_files()?;
    std::fs::write(&args.output, weights)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let card_file = card_path(&args.output);
    std::fs::write(&card_file, &card)
        .with_context(|| format!("cannot write {}", card_file.display()))?;
    eprintln!(
        "trained on {} rounds ({} stories) in {seconds:.2} s; wrote {} and {}",
        picker.card.train.rounds,
        picker.card.train.stories,
        args.output.display(),
        card_file.display()
    );
    let mut summary = serde_json::to_value(&picker.card)?;
    summary["train_seconds"] = seconds.into();
    crate::output::print_json(summary)
}

fn eval(args: EvalArgs) -> Result<()> {
    let picker = load_picker(&args.picker)?;
    let records = read_all(&args.logs)?;
    let e = picker.evaluate(&records, args.seed)?;
    if args.json {
        return crate::output::print_json(serde_json::to_value(&e)?);
    }
    println!(
        "{} rounds from {} stories\ntop-1     {:.3}  (95% CI {:.3}–{:.3}; chance {:.3})\nlog loss  {:.3}  (95% CI {:.3}–{:.3}; ln k {:.3})",
        e.rounds,
        e.stories,
        e.top1,
        e.top1_ci95[0],
        e.top1_ci95[1],
        e.chance,
        e.log_loss,
        e.log_loss_ci95[0],
        e.log_loss_ci95[1],
        e.chance_log_loss
    );
    for (name, top1) in &e.baselines {
        let [lo, hi] = e.baselines_ci95[name];
        println!("baseline {name:<22} top-1 {top1:.3}  (95% CI {lo:.3}–{hi:.3})");
    }
    Ok(())
}

fn score(args: ScoreArgs) -> Result<()> {
    let picker = load_picker(&args.picker)?;
    let records = read_all(&args.logs)?;
    if records.is_empty() {
        anyhow::bail!("the logs hold no records");
    }
    for round in group_rounds(&records) {
        let refs: Vec<&CandidateRecord> = round.iter().collect();
        let p = picker.probabilities(&refs)?;
        crate::output::print_json(json!({
            "story_id": round[0].story_id,
            "step": round[0].step,
            "record_ids": round.iter().map(|r| r.record_id.as_str()).collect::<Vec<_>>(),
            "probabilities": p,
            "chosen": round.iter().position(|r| r.chosen),
        }))?;
    }
    Ok(())
}
