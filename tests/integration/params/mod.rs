//! The step table (`storywriter.step-params/1`): validation, clamping, the rows beyond the table,
//! the parameter policies' distributions, loading from files and URLs, and `storywriter params`.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{json, Value};
use storywriter::params::{
    candidate_params, read_table, ParamSummary, Policy, PolicyMix, StepParams, StepTable,
    TableWarning, BUNDLED_VOCAB_SIZE, COUPLED_SUM, MAX_NEW_TOKENS_CAP, TREND_HORIZON,
};
use storywriter::sampling::SamplingParams;

mod policies;
mod rows;
mod sources;
mod validation;

const VOCAB: usize = BUNDLED_VOCAB_SIZE;

/// The bundled table as JSON, to edit.
fn bundled_value() -> Value {
    serde_json::from_str(&StepTable::bundled().to_json_pretty()).unwrap()
}

/// Parses `value` (as a table of the test), expecting success.
fn load(value: &Value, vocab: usize) -> (StepTable, Vec<TableWarning>) {
    StepTable::from_json(&value.to_string(), "test.json", vocab).unwrap()
}

/// Parses `value`, expecting an error, and returns its message.
fn load_error(value: &Value) -> String {
    match StepTable::from_json(&value.to_string(), "test.json", VOCAB) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn set(value: &mut Value, pointer: &str, new: Value) {
    *value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = new;
}

fn warning_at<'a>(warnings: &'a [TableWarning], path: &str) -> &'a TableWarning {
    warnings
        .iter()
        .find(|w| w.path == path)
        .unwrap_or_else(|| panic!("no warning at {path}: {warnings:?}"))
}

fn summary(mean: f64, std: f64) -> ParamSummary {
    ParamSummary {
        mean,
        std,
        p10: mean - 1.2816 * std,
        p50: mean,
        p90: mean + 1.2816 * std,
    }
}

fn row(step: u32, temperature: f64, top_k: f64) -> StepParams {
    StepParams {
        step,
        count: 10,
        temperature: summary(temperature, 0.1),
        top_k: summary(top_k, 8.0),
        top_p: summary(0.9, 0.03),
        typical_p: summary(0.95, 0.02),
        repetition_penalty: summary(1.1, 0.05),
        max_new_tokens: summary(32.0, 6.0),
    }
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn correlation(xs: &[f64], ys: &[f64]) -> f64 {
    let (mx, sx) = mean_std(xs);
    let (my, sy) = mean_std(ys);
    let cov = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / xs.len() as f64;
    cov / (sx * sy)
}

/// The value of `name` in `params`, as f64.
fn value(params: &SamplingParams, name: &str) -> f64 {
    match name {
        "temperature" => params.temperature.into(),
        "top_k" => params.top_k as f64,
        "top_p" => params.top_p.into(),
        "typical_p" => params.typical_p.into(),
        "repetition_penalty" => params.repetition_penalty.into(),
        "max_new_tokens" => params.max_new_tokens as f64,
        _ => unreachable!(),
    }
}

fn summary_of<'a>(row: &'a StepParams, name: &str) -> &'a ParamSummary {
    match name {
        "temperature" => &row.temperature,
        "top_k" => &row.top_k,
        "top_p" => &row.top_p,
        "typical_p" => &row.typical_p,
        "repetition_penalty" => &row.repetition_penalty,
        "max_new_tokens" => &row.max_new_tokens,
        _ => unreachable!(),
    }
}

const NAMES: [&str; 6] = [
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "max_new_tokens",
];

/// `n` draws of a single-candidate `policy` at `step`, one seed each.
fn draws(table: &StepTable, policy: Policy, step: u32, n: u64) -> Vec<SamplingParams> {
    let mix = PolicyMix {
        policies: vec![policy],
        ..PolicyMix::default()
    };
    (0..n)
        .map(|seed| candidate_params(table, &mix, step, seed).remove(0).0)
        .collect()
}

fn table_of(steps: Vec<StepParams>) -> StepTable {
    let mut table = StepTable::bundled();
    table.global = StepParams {
        step: 0,
        ..row(0, 0.8, 40.0)
    };
    table.steps = steps;
    table
}
