//! The dataset card (`README.md`): the fields, the statistics and the `datasets` configuration.

use std::collections::{BTreeMap, BTreeSet};

use super::export::{pair_skip, PairSkip, PreferencePair, PREFERENCES_FILE, RECORDS_FILE};
use crate::data::jsonl::{field_table, rounds};
use crate::data::records::CandidateRecord;
use crate::shared::FinishReason;

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
    ("rerolled_from", "string (only when set)", "For a candidate of a \"reroll from here\" round: the `record_id` whose first tokens its input kept (its input is that record's input and those tokens)."),
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

/// Tells in the card about the records' `hidden_mean` (BLOOM's final hidden state, the mean
/// over a candidate's tokens, f16 in base64): described when `kept` in `records.jsonl`, else
/// said to be left out when `with_hidden` records had one. Nothing when none had.
pub(super) fn add_hidden_states_to_card(card: &mut String, with_hidden: usize, kept: bool) {
    if with_hidden == 0 {
        return;
    }
    card.push_str(&format!("\n## Hidden states\n\n{with_hidden} records carry `hidden_mean`: the mean of BLOOM's final hidden state (after `ln_f`, the input of the `lm_head`) over the states that produced the candidate's tokens, taken while generating. "));
    card.push_str(if kept {
        "It is a string in `records.jsonl`: the vector's f16 values, little-endian, in base64 \
         (`numpy.frombuffer(base64.b64decode(s), dtype=\"<f2\")`); records without it have no \
         such key.\n"
    } else {
        "It is left out of `records.jsonl`; `storywriter export --with-hidden-states` keeps it.\n"
    });
}
