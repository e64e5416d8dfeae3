//! The unpaired export: every candidate of a decided round as a labelled completion, the shape
//! KTO trainers (TRL's `KTOTrainer`: `prompt`, `completion`, `label`) read, with an
//! OpenAssistant-style `rank` (0 = the chosen candidate).

use serde::{Deserialize, Serialize};

use crate::data::jsonl::{field_table, jsonl_typed_first, rounds};
use crate::data::records::CandidateRecord;
use crate::shared::SamplingParams;

/// File name of the unpaired examples in a dataset directory.
pub const UNPAIRED_FILE: &str = "unpaired.jsonl";

/// One candidate with the writer's verdict on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnpairedExample {
    /// The story text the candidate continues.
    pub prompt: String,
    /// The candidate.
    pub completion: String,
    /// `true` when it was chosen, `false` when another one of its round was, or the writer
    /// rejected the whole round.
    pub label: bool,
    /// OpenAssistant-style rank within its round: 0 for the chosen candidate, 1 for the others
    /// (one pick orders nothing among them); `null` when nothing was chosen at that step from
    /// that parent (the round was rejected as a whole).
    pub rank: Option<u32>,
    /// Whether the writer rejected the whole round (asked for new candidates).
    pub rejected_all: bool,
    /// The story.
    pub story_id: String,
    /// The story step.
    pub step: u32,
    /// `record_id` of the candidate in `records`.
    pub record_id: String,
    /// Where it was shown (1 = first), when recorded.
    pub display_position: Option<u32>,
    /// Its sampling parameters.
    pub params: SamplingParams,
    /// Who chose in its round (`human` or a picker); `null` in a rejected round.
    pub chosen_by: Option<String>,
}

/// The unpaired examples: every candidate of each round with exactly one choice (label `true`
/// and rank 0 for it, `false` and rank 1 for the others) and of each round the writer rejected
/// as a whole (label `false`, no rank). Rounds still waiting, and rounds with several choices
/// (branches), give none. Sorted as the preference pairs, then by candidate.
pub fn unpaired_examples(records: &[CandidateRecord]) -> Vec<UnpairedExample> {
    let mut out = Vec::new();
    for round in rounds(records).values() {
        let chosen = round.chosen();
        let decided_by = match chosen[..] {
            [one] => Some(one),
            [] => None,
            _ => continue,
        };
        for record in &round.records {
            let rejected_all = record.rejected_all_at.is_some() && !record.chosen;
            let same_prompt = decided_by.is_none_or(|c| c.input_text == record.input_text);
            if (decided_by.is_none() && !rejected_all) || !same_prompt {
                continue;
            }
            out.push(UnpairedExample {
                prompt: record.input_text.to_string(),
                completion: record.output_text.clone(),
                label: record.chosen,
                rank: decided_by.map(|_| u32::from(!record.chosen)),
                rejected_all,
                story_id: record.story_id.clone(),
                step: record.step,
                record_id: record.record_id.clone(),
                display_position: record.display_position,
                params: record.params.clone(),
                chosen_by: decided_by.and_then(|c| c.chosen_by.clone()),
            });
        }
    }
    out
}

/// The examples as JSON Lines for `datasets` (every field in every row; the rows that first
/// give a field a value first).
pub fn unpaired_jsonl(examples: &[UnpairedExample]) -> String {
    jsonl_typed_first(examples)
}

const UNPAIRED_FIELDS: &[(&str, &str, &str)] = &[
    ("prompt", "string", "The story text the candidate continues."),
    ("completion", "string", "The candidate continuation."),
    ("label", "bool", "true: chosen; false: another candidate of its round was chosen, or the whole round was rejected."),
    ("rank", "int or null", "OpenAssistant-style rank in its round: 0 for the chosen candidate, 1 for the others (one pick does not order them); null in a rejected round."),
    ("rejected_all", "bool", "The writer rejected the whole round and asked for new candidates."),
    ("story_id", "string", "The story."),
    ("step", "int", "The story step."),
    ("record_id", "string", "`record_id` of the candidate in `records`."),
    ("display_position", "int or null", "Where it was shown (1 = first); null in `storywriter.record/1` records."),
    ("params", "struct", "Its sampling parameters (as `params` in `records`)."),
    ("chosen_by", "string or null", "Who chose in its round (`human` or a picker's name); null in a rejected round."),
];

/// Adds the `unpaired` config to a dataset card made by
/// [`dataset_card`](crate::data::dataset::dataset_card): its entry in the front matter (when
/// there are examples: `datasets` cannot load an empty file) and a section on its fields.
pub fn add_unpaired_to_card(card: &mut String, examples: &[UnpairedExample]) {
    if !examples.is_empty() {
        if let Some(end) = card.find("\n---\n\n") {
            card.insert_str(
                end + 1,
                &format!(
                    "- config_name: unpaired\n  data_files:\n  - split: train\n    path: {UNPAIRED_FILE}\n"
                ),
            );
        }
    }
    let chosen = examples.iter().filter(|e| e.label).count();
    let rejected_all = examples.iter().filter(|e| e.rejected_all).count();
    card.push_str(&format!(
        "\n## Unpaired examples (`{UNPAIRED_FILE}`, config `unpaired`)\n\n\
         For KTO-style trainers (`prompt`, `completion`, `label`) and ranking models: every \
         candidate of a round with exactly one choice (the chosen one `label: true, rank: 0`, \
         the others `label: false, rank: 1`) and every candidate of a round the writer \
         rejected as a whole (`label: false`, `rank: null`). {} rows: {chosen} chosen, {} not \
         chosen, {rejected_all} of them from rejected rounds{}.\n\n",
        examples.len(),
        examples.len() - chosen,
        if examples.is_empty() {
            " (none yet, so the config is not listed)"
        } else {
            ""
        },
    ));
    field_table(card, UNPAIRED_FIELDS);
}
