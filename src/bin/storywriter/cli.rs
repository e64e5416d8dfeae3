//! The command line: its commands and arguments, and dispatching them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use storywriter::engine::profile::{self, SpanTimes};

use crate::model_cmds;

#[derive(Parser)]
#[command(
    name = "storywriter",
    version,
    about = "BLOOM story writer: generate, quantize, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Token ids of a text.
    Tokenize {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// The text to tokenize.
        #[arg(long)]
        text: String,
    },
    /// All vocabulary logits at the last prompt position.
    Logits {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// The prompt.
        #[arg(long)]
        prompt: String,
    },
    /// Candidate continuations of a prompt, decoded together as a batch.
    Generate(model_cmds::GenerateArgs),
    /// Write a GGUF file in llama.cpp's BLOOM layout at the given type.
    Quantize {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        input: PathBuf,
        /// Storage type: q4_0, q4_k, q6_k, q8_0, f16 or f32.
        #[arg(long)]
        dtype: String,
        /// Type of the output projection, or `tied` to reuse the embedding rows (default: q4_k
        /// for q4_0, tied otherwise; llama-quantize uses q6_k for q4 types).
        #[arg(long)]
        output_dtype: Option<String>,
        /// The .gguf file to write.
        #[arg(long)]
        output: PathBuf,
    },
    /// Write a Hugging Face directory with seeded random weights of a named shape.
    InitRandom {
        /// `bloom-560m` or `tiny`.
        #[arg(long)]
        config: String,
        /// RNG seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Directory to write.
        #[arg(long)]
        output: PathBuf,
    },
    /// Prefill and decode speed.
    Bench {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// Prompt length.
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Tokens decoded per candidate.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Candidates decoded together as a batch.
        #[arg(long, default_value_t = 1)]
        candidates: usize,
        /// Threads (default: one per physical core).
        #[arg(long)]
        threads: Option<usize>,
        /// Instead of one prefill and decode: writing rounds on stories of these lengths
        /// (comma-separated), the caches kept between rounds as the writer keeps them.
        #[arg(long, value_delimiter = ',')]
        story_tokens: Vec<usize>,
        /// Rounds after the first, with --story-tokens.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also print, on standard error, the time spent in each of the engine's spans
        /// (attention, MLP, matmuls, output projection, sampling).
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        cache: model_cmds::CacheArgs,
    },
    /// Sampling parameters of each candidate of a story step, from a step table and policies.
    Params(model_cmds::ParamsArgs),
    /// Write a story interactively, three candidates per step (pick 1/2/3, r regenerates,
    /// u undoes), appending every candidate record to a JSONL log.
    Write(crate::write::WriteArgs),
    /// Rebuild the per-step parameter table from selection logs (ours or mongoexport).
    Stats(crate::stats::StatsArgs),
    /// Write a Hugging Face dataset directory (records.jsonl, preferences.jsonl, README.md)
    /// from candidate record logs; bad lines are reported and skipped.
    Export {
        /// Candidate record logs (JSON Lines).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Directory to write (created if missing; the three files are replaced).
        #[arg(long)]
        output_dir: PathBuf,
        /// Keep each record's `hidden_mean` (BLOOM's final hidden state, f16 in base64) in
        /// records.jsonl; left out otherwise.
        #[arg(long)]
        with_hidden_states: bool,
    },
    /// Merge candidate record logs into a record store, without duplicates.
    Import {
        /// Candidate record logs (JSON Lines).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// The store (JSON Lines; created if missing). Its lines are never dropped.
        #[arg(long)]
        into: PathBuf,
    },
    /// Serve the built web app and a model directory over HTTP on this machine.
    Serve(crate::serve::ServeArgs),
    /// The learned picker: train, evaluate and score on candidate record logs.
    Picker {
        #[command(subcommand)]
        command: crate::picker_cmd::PickerCommand,
    },
    /// Write whole stories without a person, a chooser picking every round; resumable.
    Auto(crate::auto::AutoArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Bench {
        threads: Some(n), ..
    } = &cli.command
    {
        // Read by candle's thread pools when they are first used.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated; a cause whose text its parent's message already
/// ends with (the library's errors show their cause) is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Tokenize { model, text } => model_cmds::tokenize(&model, &text),
        Command::Logits { model, prompt } => model_cmds::logits(&model, &prompt),
        Command::Generate(args) => model_cmds::run_generate(args),
        Command::Quantize {
            input,
            dtype,
            output_dtype,
            output,
        } => model_cmds::quantize(&input, &dtype, output_dtype.as_deref(), &output),
        Command::InitRandom {
            config,
            seed,
            output,
        } => model_cmds::init_random(&config, seed, &output),
        Command::Bench {
            model,
            prompt_tokens,
            new_tokens,
            candidates,
            threads,
            story_tokens,
            rounds,
            json,
            profile,
            cache,
        } => {
            let times = if profile {
                Some(SpanTimes::install().context("a tracing subscriber is installed already")?)
            } else {
                None
            };
            if story_tokens.is_empty() {
                let sizes = (prompt_tokens, new_tokens, candidates);
                model_cmds::bench(
                    &model,
                    sizes,
                    (threads, cache.kv_cache),
                    json,
                    times.as_ref(),
                )?;
            } else {
                model_cmds::bench_stories(
                    &model,
                    &story_tokens,
                    rounds,
                    new_tokens,
                    candidates,
                    (threads, cache.kv_cache),
                )?;
            }
            if let Some(times) = times {
                eprint!("{}", profile::table(&times.totals()));
            }
            Ok(())
        }
        Command::Params(args) => model_cmds::run_params(&args),
        Command::Write(args) => {
            let mut loaded = model_cmds::load(&args.model)?;
            loaded.model.set_kv_dtype(args.cache.kv_cache);
            crate::write::run(args, &loaded)
        }
        Command::Stats(args) => crate::stats::run(args),
        Command::Export {
            logs,
            output_dir,
            with_hidden_states,
        } => crate::records_io::export(&logs, &output_dir, with_hidden_states),
        Command::Import { logs, into } => crate::records_io::import(&logs, &into),
        Command::Serve(args) => crate::serve::run(args),
        Command::Picker { command } => crate::picker_cmd::run(command),
        Command::Auto(args) => {
            let mut loaded = model_cmds::load(&args.model)?;
            loaded.model.set_kv_dtype(args.cache.kv_cache);
            crate::auto::run(args, &loaded)
        }
    }
}
