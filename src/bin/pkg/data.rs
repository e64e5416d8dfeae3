//! The data layer for the package: the per-step table and its policies, stories and the
//! records of their rounds (`storywriter.record/2`), and the dataset export. Every function
//! takes and returns plain JavaScript objects in the library's own shapes (snake_case fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::failure::{from_js, library, Code, Failure, Result};
use storywriter::data::dataset::{check_record, parse_records, DatasetFiles};
use storywriter::data::design::{plan_round as plan, Display, PlannedCandidate};
use storywriter::data::params::{Policy, PolicyMix, StepTable, TableWarning, BUNDLED_VOCAB_SIZE};
use storywriter::data::records::{new_seed, CandidateRecord};
use storywriter::data::story::Story;
use storywriter::shared::{Candidate, ModelIdentity, SamplingParams};
use storywriter::web::protocol::to_js;

type JsResult = std::result::Result<JsValue, JsValue>;

/// A checked table and what checking it changed.
#[derive(Serialize)]
struct CheckedTable {
    table: StepTable,
    warnings: Vec<String>,
}

fn checked((table, warnings): (StepTable, Vec<TableWarning>)) -> JsValue {
    let warnings = warnings.iter().map(TableWarning::to_string).collect();
    to_js(&CheckedTable { table, warnings })
}

/// The table bundled with the package (a documented prior), its top_k clamped to
/// `vocab_size`: `{table, warnings}`.
#[wasm_bindgen(js_name = bundledTable)]
pub fn bundled_table(vocab_size: usize) -> JsValue {
    checked(StepTable::bundled_for(vocab_size))
}

/// Checks a table object (`storywriter.step-params/1`) as the library reads table files,
/// `origin` naming it in errors: `{table, warnings}`.
#[wasm_bindgen(js_name = checkTable)]
pub fn check_table(table: JsValue, origin: &str, vocab_size: usize) -> JsResult {
    let value: serde_json::Value = from_js(table, origin)?;
    let table =
        StepTable::from_value(&value, origin, vocab_size).map_err(library(Code::BadParams))?;
    Ok(checked(table))
}

/// How to plan a round.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanOptions {
    table: serde_json::Value,
    #[serde(default = "bundled_name")]
    table_name: String,
    policies: Vec<String>,
    step: u32,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default = "yes")]
    shuffle: bool,
    #[serde(default)]
    fixed: SamplingParams,
}

fn bundled_name() -> String {
    "bundled".into()
}

fn yes() -> bool {
    true
}

/// The candidates of a round (`{table, table_name?, policies, step, seed?, shuffle?, fixed?}`):
/// one per policy, in display order (shuffled unless `shuffle` is false), each with its
/// parameters, seed and design.
#[wasm_bindgen(js_name = planRound)]
pub fn plan_round(options: JsValue) -> JsResult {
    let options: PlanOptions = from_js(options, "the round's plan")?;
    let (table, _) = StepTable::from_value(&options.table, &options.table_name, BUNDLED_VOCAB_SIZE)
        .map_err(library(Code::BadParams))?;
    let policies = options
        .policies
        .iter()
        .map(|name| name.parse::<Policy>())
        .collect::<storywriter::Result<Vec<_>>>()
        .map_err(library(Code::BadParams))?;
    if policies.is_empty() {
        return Err(bad("policies: give at least one policy").into());
    }
    options
        .fixed
        .validate()
        .map_err(|e| bad(format!("fixed: {e}")))?;
    let mix = PolicyMix {
        policies,
        fixed: options.fixed,
    };
    let display = if options.shuffle {
        Display::Shuffled
    } else {
        Display::InMixOrder
    };
    let seed = options.seed.unwrap_or_else(new_seed);
    let step = options.step.max(1);
    Ok(to_js(&plan(
        &table,
        &options.table_name,
        &mix,
        step,
        seed,
        display,
    )))
}

/// A new story opening with `opening`.
#[wasm_bindgen(js_name = newStory)]
pub fn new_story(opening: &str) -> JsValue {
    to_js(&Story::new(opening))
}

/// What [`record_round`] needs of a generation's result.
#[derive(Deserialize)]
struct Generated {
    input_ids: Vec<u32>,
    candidates: Vec<Candidate>,
    model: ModelIdentity,
}

/// A story with the records of a round and the records themselves.
#[derive(Serialize)]
struct Recorded<'a> {
    story: &'a Story,
    records: &'a [CandidateRecord],
}

/// Records a round's candidates (`result`, a generation's result, of the `planned`
/// candidates) as the story's next step: `{story, records}`, the records waiting for a choice.
#[wasm_bindgen(js_name = recordRound)]
pub fn record_round(story: JsValue, planned: JsValue, result: JsValue) -> JsResult {
    let mut story = read_story(story)?;
    let planned: Vec<PlannedCandidate> = from_js(planned, "planned")?;
    let result: Generated = from_js(result, "result")?;
    let records = story
        .add_round(
            &result.input_ids,
            &planned,
            &result.candidates,
            &result.model,
        )
        .map_err(library(Code::BadParams))?
        .to_vec();
    Ok(to_js(&Recorded {
        story: &story,
        records: &records,
    }))
}

/// Takes the waiting candidate `record_id` (chosen by `by`): `{story, records}`, the records
/// holding the chosen one.
#[wasm_bindgen]
pub fn choose(story: JsValue, record_id: &str, by: &str) -> JsResult {
    let mut story = read_story(story)?;
    let record = story
        .choose(record_id, by)
        .map_err(library(Code::BadParams))?
        .clone();
    Ok(to_js(&Recorded {
        story: &story,
        records: &[record],
    }))
}

/// The story one step back (the undone round waits for a choice again).
#[wasm_bindgen]
pub fn undo(story: JsValue) -> JsResult {
    let mut story = read_story(story)?;
    story.undo().map_err(library(Code::BadParams))?;
    Ok(to_js(&story))
}

/// The story `story_id` rebuilt from its records (`null` when none belongs to it).
#[wasm_bindgen(js_name = storyFromRecords)]
pub fn story_from_records(story_id: &str, records: JsValue) -> JsResult {
    let records = read_records(records)?;
    Ok(to_js(&Story::from_records(story_id, &records)))
}

/// The Hugging Face dataset of a set of records, as `{files: {"records.jsonl": …,
/// "preferences.jsonl": …, "unpaired.jsonl": …, "README.md": …}, pairs}`; records' hidden
/// states stay out of `records.jsonl` unless `hidden_states`.
#[wasm_bindgen(js_name = exportDataset)]
pub fn export_dataset(records: JsValue, hidden_states: bool) -> JsResult {
    #[derive(Serialize)]
    struct Dataset<'a> {
        files: BTreeMap<&'static str, &'a str>,
        pairs: usize,
    }
    let records = read_records(records)?;
    let dataset = DatasetFiles::build_with(&records, hidden_states);
    Ok(to_js(&Dataset {
        files: dataset.files().into_iter().collect(),
        pairs: dataset.pairs,
    }))
}

/// The records of a JSON Lines text (a log or an export), each line checked:
/// `{records, errors}`, one error (`origin:line: reason`) per bad line.
#[wasm_bindgen(js_name = parseRecords)]
pub fn parse_records_text(text: &str, origin: &str) -> JsValue {
    #[derive(Serialize)]
    struct Parsed {
        records: Vec<CandidateRecord>,
        errors: Vec<String>,
    }
    let (records, errors) = parse_records(text, origin);
    let errors = errors.iter().map(ToString::to_string).collect();
    to_js(&Parsed { records, errors })
}

/// A story object, its records checked.
fn read_story(value: JsValue) -> Result<Story> {
    let story: Story = from_js(value, "story")?;
    check_all(&story.records, "story.records")?;
    Ok(story)
}

/// An array of records, each checked.
fn read_records(value: JsValue) -> Result<Vec<CandidateRecord>> {
    let records: Vec<CandidateRecord> = from_js(value, "records")?;
    check_all(&records, "records")?;
    Ok(records)
}

fn check_all(records: &[CandidateRecord], what: &str) -> Result<()> {
    for (index, record) in records.iter().enumerate() {
        check_record(record).map_err(|e| bad(format!("{what}[{index}]: {e}")))?;
    }
    Ok(())
}

fn bad(message: impl std::fmt::Display) -> Failure {
    Failure::new(Code::BadParams, message)
}
