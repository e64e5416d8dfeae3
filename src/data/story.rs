//! A story written in steps, three candidates at a time, with every candidate kept.
//!
//! A [`Story`] holds the current text, the chosen candidates along the current path (one per
//! step), the candidates of the round being decided, and every [`CandidateRecord`] ever generated
//! for it. Records form a tree through `parent_record_id`: undoing a choice and picking another
//! candidate starts a new branch and keeps the old one. The terminal writer (`storywriter
//! write`) and the web app drive the same operations: `session::write_round`, [`Story::choose`],
//! [`Story::undo`], [`Story::edit`].

use std::collections::hash_map::{Entry, HashMap};

use serde::{Deserialize, Serialize};

pub use crate::data::design::PlannedCandidate;
use crate::data::records::{new_id, timestamp_now, CandidateRecord, RECORD_SCHEMA};
use crate::data::shared_input::{SharedIds, SharedText};
use crate::error::{Error, Result};
use crate::shared::{Candidate, FinishReason, HiddenState, ModelIdentity};

/// The app name and version written into every record.
pub const APP_VERSION: &str = concat!("storywriter ", env!("CARGO_PKG_VERSION"));

/// A story and all its candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Story {
    /// Unique id (shared by its records).
    pub id: String,
    /// The current text: the opening prompt, the chosen continuations and any hand edits.
    pub text: String,
    /// Record ids of the chosen candidates on the current path, step by step.
    pub path: Vec<String>,
    /// Record ids of the candidates waiting for a choice at the next step.
    pub pending: Vec<String>,
    /// Every candidate generated for the story, in generation order.
    pub records: Vec<CandidateRecord>,
}

/// A beginning of the story's text and the token ids the model saw for it, as the records
/// keep them: the next round's input continues these ids instead of tokenizing the whole text
/// again (no drift at the seams, no bytes lost in a character split across tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenPrefix {
    /// Bytes of the story's text the ids stand for.
    pub text_len: usize,
    /// The ids (the model's window: a long story's oldest tokens may be cut).
    pub ids: Vec<u32>,
}

impl Story {
    /// A new story opening with `prompt`.
    pub fn new(prompt: &str) -> Self {
        Self {
            id: new_id(),
            text: prompt.to_string(),
            path: vec![],
            pending: vec![],
            records: vec![],
        }
    }

    /// The step the next round of candidates is for (1 for the first continuation).
    pub fn next_step(&self) -> u32 {
        self.path.len() as u32 + 1
    }

    /// The record with this id.
    pub fn record(&self, record_id: &str) -> Option<&CandidateRecord> {
        self.records.iter().find(|r| r.record_id == record_id)
    }

    /// The candidates waiting for a choice, in order.
    pub fn pending_records(&self) -> Vec<&CandidateRecord> {
        self.pending
            .iter()
            .filter_map(|id| self.record(id))
            .collect()
    }

    /// Records one round of generated candidates for the next step; they become the pending
    /// candidates. Returns the new records.
    pub fn add_round(
        &mut self,
        input_ids: &[u32],
        planned: &[PlannedCandidate],
        candidates: &[Candidate],
        model: &ModelIdentity,
    ) -> Result<&[CandidateRecord]> {
        if planned.len() != candidates.len() {
            return Err(Error::Invalid(format!(
                "{} candidates planned but {} generated",
                planned.len(),
                candidates.len()
            )));
        }
        let created_at = timestamp_now();
        let (input_text, input_ids) = self.shared_input(input_ids);
        let first = self.records.len();
        let step = self.next_step();
        for (index, (plan, candidate)) in planned.iter().zip(candidates).enumerate() {
            self.records.push(CandidateRecord {
                schema: RECORD_SCHEMA.to_string(),
                record_id: new_id(),
                story_id: self.id.clone(),
                step,
                candidate: index as u32 + 1,
                parent_record_id: self.path.last().cloned(),
                input_text: input_text.clone(),
                input_ids: input_ids.clone(),
                params: candidate.params.clone(),
                policy: plan.policy.clone(),
                param_table: plan.param_table.clone(),
                seed: candidate.seed,
                output_text: candidate.text.clone(),
                output_ids: candidate.ids.clone(),
                logprobs: candidate.logprobs.clone(),
                finish_reason: candidate.finish_reason,
                chosen: false,
                chosen_by: None,
                created_at: created_at.clone(),
                chosen_at: None,
                model: model.clone(),
                app_version: APP_VERSION.to_string(),
                display_position: plan.design.map(|d| d.display_position),
                mix_slot: plan.design.map(|d| d.mix_slot),
                order_seed: plan.design.map(|d| d.order_seed),
                log_propensity: plan.design.and_then(|d| d.log_propensity),
                decision_ms: None,
                rejected_all_at: None,
                edited_at: None,
                edited_text: None,
                hidden_mean: (!candidate.hidden_mean.is_empty())
                    .then(|| HiddenState::from_f32(&candidate.hidden_mean)),
                rerolled_from: None,
            });
        }
        self.pending = self.records[first..]
            .iter()
            .map(|r| r.record_id.clone())
            .collect();
        Ok(&self.records[first..])
    }

    /// The next round's input (the story's text and `input_ids`), sharing its storage with
    /// what the last pick continues.
    fn shared_input(&self, input_ids: &[u32]) -> (SharedText, SharedIds) {
        match self.path.last().and_then(|id| self.record(id)) {
            Some(parent) => {
                let (text, ids) = parent.continued();
                (text.continued_as(&self.text), ids.continued_as(input_ids))
            }
            None => (self.text.as_str().into(), input_ids.into()),
        }
    }

    /// Makes every record's input share its storage with its parent's (records read from a
    /// file or an import hold whole copies); the inputs stay the same.
    pub fn share_inputs(&mut self) {
        let index: HashMap<String, usize> = (self.records.iter().enumerate())
            .map(|(at, r)| (r.record_id.clone(), at))
            .collect();
        // Parents first: a parent's step is before its children's.
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by_key(|&at| self.records[at].step);
        for at in order {
            let parent = self.records[at]
                .parent_record_id
                .as_ref()
                .and_then(|id| index.get(id));
            if let Some(&parent) = parent.filter(|&&p| p != at) {
                let (text, ids) = self.records[parent].continued();
                self.records[at].share_input_with(&text, &ids);
            }
        }
    }

    /// Takes the pending candidate `record_id` (chosen by `by`: `human` or a picker's name): the
    /// story grows by its text. Back on a branch walked before, the latest round generated after
    /// that choice (for the same text) waits for a choice again; otherwise nothing is pending.
    /// Returns the updated record.
    pub fn choose(&mut self, record_id: &str, by: &str) -> Result<&CandidateRecord> {
        if !self.pending.iter().any(|id| id == record_id) {
            return Err(Error::Invalid(format!(
                "record {record_id} is not one of the candidates waiting for a choice"
            )));
        }
        let index = self
            .records
            .iter()
            .position(|r| r.record_id == record_id)
            .ok_or_else(|| Error::Invalid(format!("no record {record_id} in the story")))?;
        let record = &mut self.records[index];
        record.chosen = true;
        record.chosen_by = Some(by.to_string());
        record.chosen_at = Some(timestamp_now());
        record.decision_ms =
            crate::data::records::millis_between(&record.created_at, &record.chosen_at);
        self.text = format!("{}{}", record.input_text, record.output_text);
        self.path.push(record_id.to_string());
        let latest = self
            .records
            .iter()
            .filter(|r| {
                r.parent_record_id.as_deref() == Some(record_id) && r.input_text == self.text
            })
            .map(|r| r.created_at.clone())
            .max();
        self.pending = match latest {
            Some(created_at) => self.round(Some(record_id), &created_at),
            None => vec![],
        };
        Ok(&self.records[index])
    }

    /// The record ids of the round generated at `created_at` after the choice `parent`, for the
    /// current text.
    pub(crate) fn round(&self, parent: Option<&str>, created_at: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| {
                r.parent_record_id.as_deref() == parent
                    && r.input_text == self.text
                    && r.created_at == created_at
            })
            .map(|r| r.record_id.clone())
            .collect()
    }

    /// Goes back one step: the story returns to the text before the last choice, and the round
    /// the undone choice came from (the one chosen before included) waits for a choice again,
    /// so picking another one starts a branch and keeps the old one. Other rounds generated at
    /// that point (regenerated ones) stay in the records.
    pub fn undo(&mut self) -> Result<()> {
        let last = self
            .path
            .pop()
            .ok_or_else(|| Error::Invalid("nothing to undo: no candidate chosen yet".into()))?;
        let undone = self
            .record(&last)
            .ok_or_else(|| Error::Invalid(format!("no record {last} in the story")))?;
        let (parent, text, created_at) = (
            undone.parent_record_id.clone(),
            undone.input_text.to_string(),
            undone.created_at.clone(),
        );
        self.text = text;
        self.pending = self.round(parent.as_deref(), &created_at);
        Ok(())
    }

    /// Goes back to `step` (undoing every later choice): its round waits for a choice again.
    pub fn back_to(&mut self, step: u32) -> Result<()> {
        while self.next_step() > step {
            self.undo()?;
        }
        Ok(())
    }

    /// Replaces the story text by hand; the pending candidates no longer continue it and are
    /// dropped from the choice (their records stay).
    pub fn edit(&mut self, text: &str) {
        self.text = text.to_string();
        self.pending.clear();
    }

    /// The longest beginning of the text whose token ids a record holds: the last chosen
    /// candidate's input and output ids (a final end-of-sequence id left out), or the input ids
    /// of the round waiting for a choice. `None` when no record continues the current text (a
    /// new story, or a hand edit before them).
    pub fn token_prefix(&self) -> Option<TokenPrefix> {
        let chosen = self
            .path
            .last()
            .and_then(|id| self.record(id))
            .and_then(|r| {
                let rest = r
                    .input_text
                    .is_prefix_of(&self.text)
                    .then(|| &self.text[r.input_text.len()..])?;
                rest.starts_with(&r.output_text).then(|| {
                    let mut ids = r.input_ids.followed_by(&r.output_ids).to_vec();
                    if r.finish_reason == FinishReason::Eos {
                        ids.pop();
                    }
                    TokenPrefix {
                        text_len: r.input_text.len() + r.output_text.len(),
                        ids,
                    }
                })
            });
        let pending = self
            .pending_records()
            .into_iter()
            .find(|r| r.input_text.is_prefix_of(&self.text))
            .map(|r| TokenPrefix {
                text_len: r.input_text.len(),
                ids: r.input_ids.to_vec(),
            });
        [chosen, pending]
            .into_iter()
            .flatten()
            .filter(|p| !p.ids.is_empty())
            .max_by_key(|p| p.text_len)
    }

    /// Rebuilds the story `story_id` from its records (for example a terminal writer's log after
    /// a crash); `None` when it has none. `records` may hold several versions of a record (first
    /// unchosen, then chosen): the last version of each id wins. The current path ends at the
    /// most recently chosen candidate; the last round generated after it, if any, is pending.
    pub fn from_records(story_id: &str, records: &[CandidateRecord]) -> Option<Self> {
        // The last version of each record, and where in `records` it was last seen (the order
        // of events when two choices share a millisecond).
        let mut latest: Vec<CandidateRecord> = vec![];
        let mut seen_at: Vec<usize> = vec![];
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (at, record) in records.iter().enumerate() {
            if record.story_id != story_id {
                continue;
            }
            match index.entry(&record.record_id) {
                Entry::Occupied(i) => (latest[*i.get()], seen_at[*i.get()]) = (record.clone(), at),
                Entry::Vacant(slot) => {
                    slot.insert(latest.len());
                    latest.push(record.clone());
                    seen_at.push(at);
                }
            }
        }
        let opening = latest.iter().find(|r| r.step == 1)?.input_text.to_string();
        let mut story = Self {
            id: story_id.to_string(),
            text: opening,
            path: vec![],
            pending: vec![],
            records: latest,
        };
        let leaf = story
            .records
            .iter()
            .zip(&seen_at)
            .filter(|(r, _)| r.chosen)
            .max_by(|(a, a_at), (b, b_at)| (&a.chosen_at, a_at).cmp(&(&b.chosen_at, b_at)))
            .map(|(r, _)| r.clone());
        if let Some(leaf) = &leaf {
            let mut cursor = Some(leaf.record_id.clone());
            while let Some(id) = cursor {
                cursor = story.record(&id).and_then(|r| r.parent_record_id.clone());
                story.path.push(id);
            }
            story.path.reverse();
            story.text = format!("{}{}", leaf.input_text, leaf.output_text);
        }
        let parent = leaf.map(|l| l.record_id);
        let step = story.next_step();
        if let Some(last) = story
            .records
            .iter()
            .rev()
            .find(|r| r.step == step && r.parent_record_id == parent)
        {
            let (created_at, text) = (last.created_at.clone(), last.input_text.to_string());
            story.pending = story
                .records
                .iter()
                .filter(|r| r.parent_record_id == parent && r.created_at == created_at)
                .map(|r| r.record_id.clone())
                .collect();
            story.text = text;
        }
        story.share_inputs();
        Some(story)
    }
}

/// Rounds recorded without a model, for the data layer's tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::data::design::{plan_round, Display};
    use crate::data::params::{PolicyMix, StepTable};

    /// Records a round fed `input_ids` whose candidates write `outputs` (text and ids; at most
    /// three), created at `at`. Returns the new record ids.
    pub(crate) fn round_with(
        story: &mut Story,
        input_ids: &[u32],
        outputs: &[(&str, &[u32])],
        at: &str,
    ) -> Vec<String> {
        let table = StepTable::bundled();
        let planned = plan_round(
            &table,
            "bundled",
            &PolicyMix::default(),
            1,
            7,
            Display::InMixOrder,
        );
        let candidates: Vec<Candidate> = outputs
            .iter()
            .zip(&planned)
            .map(|((text, ids), plan)| Candidate {
                ids: ids.to_vec(),
                text: text.to_string(),
                logprobs: vec![0.0; ids.len()],
                params: plan.params.clone(),
                seed: plan.seed,
                finish_reason: FinishReason::Length,
                hidden_mean: vec![],
            })
            .collect();
        let model = ModelIdentity {
            name: "test".into(),
            format: "gguf".into(),
            quantization: "f32".into(),
            content_hash: String::new(),
        };
        let records = story.add_round(input_ids, &planned[..outputs.len()], &candidates, &model);
        let ids: Vec<String> = records
            .unwrap()
            .iter()
            .map(|r| r.record_id.clone())
            .collect();
        for record in story
            .records
            .iter_mut()
            .filter(|r| ids.contains(&r.record_id))
        {
            record.created_at = at.to_string();
        }
        ids
    }

    /// Records a round of two candidates writing `texts`, created at `at` (rounds in one
    /// millisecond would share their time).
    pub(crate) fn round(story: &mut Story, texts: [&str; 2], at: &str) -> Vec<String> {
        round_with(story, &[1], &[(texts[0], &[1]), (texts[1], &[1])], at)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{round, round_with};
    use super::*;
    use crate::data::design::{plan_round, Display};
    use crate::data::params::{PolicyMix, StepTable};

    #[test]
    fn plan_round_is_reproducible_with_consecutive_seeds() {
        let table = StepTable::bundled();
        let plan = || {
            plan_round(
                &table,
                "t",
                &PolicyMix::default(),
                2,
                40,
                Display::InMixOrder,
            )
        };
        let planned = plan();
        assert_eq!(planned, plan());
        let seeds: Vec<u64> = planned.iter().map(|p| p.seed).collect();
        assert_eq!(seeds, [40, 41, 42]);
        assert!(planned
            .iter()
            .all(|p| p.param_table.as_deref() == Some("t")));
    }

    #[test]
    fn choosing_again_where_a_branch_was_walked_brings_its_latest_round_back() {
        let mut story = Story::new("Once");
        let first = round(&mut story, [" a", " b"], "1");
        story.choose(&first[0], "human").unwrap();
        assert!(
            story.pending.is_empty(),
            "nothing was written after this choice yet"
        );
        round(&mut story, [" c", " d"], "2");
        let latest = round(&mut story, [" e", " f"], "3");
        story.back_to(1).unwrap();
        assert_eq!((story.path.len(), &story.pending), (0, &first));
        story.choose(&first[0], "human").unwrap();
        assert_eq!(story.pending, latest);
        // A round written after a hand edit continues another text: not brought back.
        story.edit("Once a, edited");
        round(&mut story, [" g", " h"], "4");
        story.undo().unwrap();
        story.choose(&first[0], "human").unwrap();
        assert_eq!(story.pending, latest);
        story.undo().unwrap();
        story.choose(&first[1], "human").unwrap();
        assert!(
            story.pending.is_empty(),
            "the other branch has no round yet"
        );
    }

    /// Bytes a round of three candidates and a pick of the first leave allocated, at a story
    /// of `steps` steps of `output` each.
    fn retained_by_a_round(story: &mut Story, output: &str, ids: &[u32]) -> isize {
        let input: Vec<u32> = story.token_prefix().map(|p| p.ids).unwrap_or(vec![1]);
        let (_, bytes) = crate::retained::retained_by(|| {
            let round = round_with(story, &input, &[(output, ids); 3], "2026-12-04T00:00:00Z");
            story.choose(&round[0], "human").unwrap();
        });
        bytes
    }

    #[test]
    fn a_round_holds_what_it_adds_not_the_whole_story_again() {
        let mut story = Story::new("Once upon a time");
        let output = " a fox ran far away from the river, and the river ran after it.".repeat(3);
        let ids: Vec<u32> = (0..48).collect();
        let mut early = 0;
        for step in 1..=300 {
            let bytes = retained_by_a_round(&mut story, &output, &ids);
            if step == 10 {
                early = bytes;
            }
            if step == 300 {
                // Whole copies would hold 3 × 290 steps' text and ids more by now (~200 KB).
                assert!(
                    bytes < 2 * early + 8_192,
                    "a round at step 300 keeps {bytes} bytes, at step 10 {early}"
                );
            }
        }
        let last = story.record(story.path.last().unwrap()).unwrap();
        assert_eq!(
            last.input_text.len() + last.output_text.len(),
            story.text.len()
        );
        assert_eq!(last.input_ids.len(), 1 + 299 * ids.len());
    }
}
