//! The commands on a model: generate, params, quantize, init-random and bench.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use storywriter::engine::generate::{generate, CandidateSpec};
use storywriter::engine::gguf::TensorTypes;
use storywriter::engine::loader::{native, LoadedModel};
use storywriter::engine::profile::SpanTimes;
use storywriter::engine::sampling::{Sampler, SamplingParams};
use storywriter::model::KvDtype;
use web_time::Instant;

use crate::output::print_json;

/// The KV cache option of the commands that write (`write`, `auto`, `bench`).
#[derive(Args, Clone, Copy)]
pub struct CacheArgs {
    /// What the KV cache stores keys and values as: f16 (the web app's: half the memory, and a
    /// round over a long story barely slower than over a short one) or f32 (the logits of
    /// transformers to f32 rounding).
    #[arg(long, default_value = "f16")]
    pub kv_cache: KvDtype,
}

/// Arguments of `storywriter params`.
#[derive(Args)]
pub struct ParamsArgs {
    /// `bundled`, a table file or an http(s) URL serving one; a table that cannot be read or
    /// is invalid is an error.
    #[arg(long, default_value = "bundled")]
    table: String,
    /// Story step (1 = continuing the opening prompt).
    #[arg(long, default_value_t = 1)]
    step: u32,
    /// One policy per candidate: step-mean, step-sample, coupled-random or fixed.
    #[arg(long, default_value = "step-mean,step-sample,step-sample")]
    policy: String,
    /// Seed of the random policies.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Vocabulary size top_k is clamped to.
    #[arg(long, default_value_t = storywriter::data::params::BUNDLED_VOCAB_SIZE)]
    vocab_size: usize,
}

/// Arguments of `storywriter generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Tokens to generate per candidate at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Take the most likely token at every step.
    #[arg(long)]
    greedy: bool,
    /// Seed of the first candidate; candidate i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Softmax temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Nucleus mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Minimum probability relative to the top token (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Typical mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    typical_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Stop a candidate at the end of a sentence.
    #[arg(long)]
    stop_at_sentence_end: bool,
    /// Number of candidates.
    #[arg(long, default_value_t = 1)]
    candidates: usize,
    /// Print JSON instead of streaming text.
    #[arg(long)]
    json: bool,
}
/// Loads a model (a Hugging Face directory or a .gguf file) on the CPU.
pub fn load(path: &Path) -> Result<LoadedModel> {
    native::load(path, &Device::Cpu)
        .with_context(|| format!("cannot load model {}", path.display()))
}

/// Prints the token ids of `text`.
pub fn tokenize(model: &Path, text: &str) -> Result<()> {
    let loaded = load(model)?;
    print_json(json!({ "ids": loaded.tokenizer.encode(text)? }))
}

/// Prints every vocabulary logit at the last position of `prompt`.
pub fn logits(model: &Path, prompt: &str) -> Result<()> {
    let loaded = load(model)?;
    let ids = loaded.tokenizer.encode(prompt)?;
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let mut cache = loaded.model.new_cache();
    let logits = loaded.model.forward(&input, &mut cache, &[ids.len() - 1])?;
    let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    print_json(json!({ "ids": ids, "logits": logits }))
}

/// Times writing rounds on stories of `story_tokens` tokens, the caches kept between rounds.
pub fn bench_stories(
    model: &Path,
    story_tokens: &[usize],
    rounds: usize,
    new_tokens: usize,
    candidates: usize,
    (threads, kv_cache): (Option<usize>, KvDtype),
) -> Result<()> {
    let mut loaded = load(model)?;
    loaded.model.set_kv_dtype(kv_cache);
    let rows =
        crate::bench_rounds::story_rounds(&loaded, story_tokens, rounds, new_tokens, candidates)?;
    print_json(json!({
        "model": loaded.identity,
        "threads": threads.unwrap_or_else(candle_core::utils::get_num_threads),
        "kv_cache": kv_cache,
        "candidates": candidates,
        "new_tokens": new_tokens,
        "stories": rows,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Generates candidates for a prompt, streaming text or printing JSON.
pub fn run_generate(args: GenerateArgs) -> Result<()> {
    let loaded = load(&args.model)?;
    let params = SamplingParams {
        greedy: args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        typical_p: args.typical_p,
        repetition_penalty: args.repetition_penalty,
        max_new_tokens: args.max_new_tokens,
        stop_at_sentence_end: args.stop_at_sentence_end,
    };
    params.validate()?;
    let specs: Vec<CandidateSpec> = (0..args.candidates as u64)
        .map(|i| CandidateSpec {
            params: params.clone(),
            seed: args.seed + i,
        })
        .collect();
    let ids = loaded.tokenizer.encode(&args.prompt)?;
    let stream = !args.json && args.candidates == 1;
    if stream {
        print!("{}", args.prompt);
    }
    let generation = generate(&loaded.model, &loaded.tokenizer, &ids, &specs, |event| {
        if stream {
            print!("{}", event.text);
            let _ = std::io::stdout().flush();
        }
        ControlFlow::Continue(())
    })?;
    if args.json {
        return print_json(json!({
            "model": loaded.identity,
            "prompt_ids": ids,
            "candidates": generation.candidates,
            "stats": generation.stats,
        }));
    }
    if stream {
        println!();
    } else {
        for (i, candidate) in generation.candidates.iter().enumerate() {
            println!(
                "--- candidate {} (seed {}) ---\n{}{}\n",
                i + 1,
                candidate.seed,
                args.prompt,
                candidate.text
            );
        }
    }
    let s = &generation.stats;
    eprintln!(
        "prefill {} tokens in {:.2}s, {} tokens in {} batched steps in {:.2}s",
        s.prompt_tokens, s.prefill_s, s.generated_tokens, s.decode_steps, s.decode_s
    );
    Ok(())
}

/// Prints each candidate's sampling parameters for a story step.
pub fn run_params(args: &ParamsArgs) -> Result<()> {
    use storywriter::data::params::{
        candidate_params, read_table, Policy, PolicyMix, TableWarning,
    };
    if args.step == 0 {
        bail!("--step must be at least 1 (steps start at 1)");
    }
    let mix: PolicyMix = args.policy.parse()?;
    let (table, warnings) = read_table(&args.table, args.vocab_size)?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    /// One candidate's parameters and the policy that made them.
    #[derive(serde::Serialize)]
    struct Candidate {
        policy: Policy,
        params: SamplingParams,
    }
    /// What `storywriter params` prints (serialized directly so that f32 values print as
    /// the shortest decimal that reads back to them).
    #[derive(serde::Serialize)]
    struct Report {
        step: u32,
        candidates: Vec<Candidate>,
        warnings: Vec<TableWarning>,
    }
    let candidates = candidate_params(&table, &mix, args.step, args.seed)
        .into_iter()
        .map(|(params, policy)| Candidate { policy, params })
        .collect();
    let report = Report {
        step: args.step,
        candidates,
        warnings,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    Ok(())
}

/// Quantizes a Hugging Face directory or a GGUF file into a GGUF file.
pub fn quantize(
    input: &Path,
    dtype: &str,
    output_dtype: Option<&str>,
    output: &Path,
) -> Result<()> {
    let dtype = storywriter::engine::gguf::parse_dtype(dtype)?;
    let mut types = TensorTypes::default_for(dtype);
    match output_dtype {
        Some("tied") => types.output = None,
        Some(name) => types.output = Some(storywriter::engine::gguf::parse_dtype(name)?),
        None => {}
    }
    let tmp = output.with_extension("gguf.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed} {msg}")
            .expect("valid template"),
    );
    native::with_opened(input, &Device::Cpu, |opened| {
        storywriter::engine::gguf::write_gguf(&mut writer, opened, types, |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} → {:?}", p.name, p.dtype));
            if p.fell_back {
                bar.println(format!(
                    "{}: rows do not fit {dtype:?} blocks, stored as {:?}",
                    p.name, p.dtype
                ));
            }
        })
    })
    .with_context(|| format!("cannot quantize {}", input.display()))?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&tmp, output)?;
    bar.finish_and_clear();
    let size = std::fs::metadata(output)?.len();
    eprintln!("wrote {} ({:.1} MB)", output.display(), size as f64 / 1e6);
    Ok(())
}

/// Writes a BLOOM model with seeded random weights.
pub fn init_random(name: &str, seed: u64, output: &Path) -> Result<()> {
    let Some(config) = storywriter::engine::init::named_config(name) else {
        bail!("unknown config `{name}`, expected bloom-560m or tiny");
    };
    std::fs::create_dir_all(output)?;
    let tensors = storywriter::engine::init::random_checkpoint(&config, seed)?;
    candle_core::safetensors::save(&tensors, output.join("model.safetensors"))?;
    std::fs::write(
        output.join("config.json"),
        storywriter::engine::init::hf_config_json(&config),
    )?;
    let tokenizer = storywriter::engine::tokenizer::Tokenizer::byte_level()?;
    std::fs::write(output.join("tokenizer.json"), tokenizer.to_json()?)?;
    eprintln!(
        "wrote {} ({name}, seed {seed}, random weights)",
        output.display()
    );
    Ok(())
}

/// Peak resident memory of this process in MB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Times one prefill and decode; `profile`'s span times are reset when the decode starts, so
/// that they cover the decode only.
pub fn bench(
    path: &Path,
    (prompt_tokens, new_tokens, candidates): (usize, usize, usize),
    (threads, kv_cache): (Option<usize>, KvDtype),
    as_json: bool,
    profile: Option<&SpanTimes>,
) -> Result<()> {
    if prompt_tokens == 0 || candidates == 0 {
        bail!("--prompt-tokens and --candidates must be at least 1");
    }
    let start = Instant::now();
    let mut loaded = load(path)?;
    loaded.model.set_kv_dtype(kv_cache);
    let load_s = start.elapsed().as_secs_f64();
    let model = &loaded.model;
    // A fixed pseudo-random prompt over the tokenizer's ids.
    let max_id = loaded.tokenizer.max_token_id().max(4);
    let ids: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| 4 + (i * 7919) % (max_id - 3))
        .collect();
    // Warm-up: first use of the thread pools and weight repacking.
    let warm = Tensor::new(&ids[..ids.len().min(8)], &Device::Cpu)?.unsqueeze(0)?;
    model.forward(&warm, &mut model.new_cache(), &[0])?;

    let start = Instant::now();
    let mut cache = model.new_cache();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let logits = model.forward(&input, &mut cache, &[prompt_tokens - 1])?;
    let prefill_s = start.elapsed().as_secs_f64();

    // Greedy decode of every candidate, ignoring end-of-sequence so each step is measured.
    let greedy = SamplingParams {
        greedy: true,
        ..SamplingParams::default()
    };
    let mut sampler = Sampler::new(greedy, 0)?;
    let first = sampler.sample(&logits.flatten_all()?.to_vec1::<f32>()?, &ids)?;
    let mut cache = cache.fork(candidates)?;
    let mut last = vec![first; candidates];
    if let Some(times) = profile {
        times.reset();
    }
    let start = Instant::now();
    for _ in 0..new_tokens {
        let input = Tensor::new(last.as_slice(), &Device::Cpu)?.unsqueeze(1)?;
        let rows: Vec<Vec<f32>> = model
            .forward(&input, &mut cache, &[0])?
            .squeeze(1)?
            .to_vec2()?;
        last = rows
            .iter()
            .map(|row| sampler.sample(row, &ids))
            .collect::<storywriter::Result<_>>()?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    let report = json!({
        "model": loaded.identity,
        "threads": threads.unwrap_or_else(candle_core::utils::get_num_threads),
        "kv_cache": kv_cache,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "candidates": candidates,
        "load_s": load_s,
        "prefill_tok_s": prompt_tokens as f64 / prefill_s,
        "decode_tok_s": (new_tokens * candidates) as f64 / decode_s,
        "decode_step_ms": 1e3 * decode_s / new_tokens.max(1) as f64,
        "peak_rss_mb": peak_rss_mb(),
    });
    if as_json {
        print_json(report)
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(())
    }
}
