//! A story as a tree: every round (the candidates generated together for one text) a node, its
//! candidates as its children, and the rounds generated after a picked candidate as that
//! candidate's children — every branch kept. [`Story::go_to`] moves the story to any node.

use std::collections::HashMap;

use crate::data::records::CandidateRecord;
use crate::data::story::Story;
use crate::error::{Error, Result};

/// One round: candidates generated together, after the same pick, for the same text.
#[derive(Clone, Debug, PartialEq)]
pub struct Round<'a> {
    /// The pick it continues (`None` for the opening's rounds).
    pub parent: Option<&'a str>,
    /// Its candidates, in the order they were shown.
    pub records: Vec<&'a CandidateRecord>,
}

/// What became of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Picked (now or on a branch walked before).
    Chosen,
    /// Waiting for a choice in the open round.
    Waiting,
    /// Another candidate of its round was picked, or the writer rejected the whole round.
    Rejected,
    /// Left without a decision (the story moved on by a hand edit or an undo).
    NotPicked,
}

impl Outcome {
    /// Its name in the page's `data-outcome` attributes.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Chosen => "chosen",
            Outcome::Waiting => "waiting",
            Outcome::Rejected => "rejected",
            Outcome::NotPicked => "not-picked",
        }
    }
}

/// The story's rounds, in the order they were generated, and which follow which pick.
pub struct Tree<'a> {
    /// Every round, in generation order.
    pub rounds: Vec<Round<'a>>,
    children: HashMap<Option<&'a str>, Vec<usize>>,
}

impl<'a> Tree<'a> {
    /// The tree of `story`'s records.
    pub fn new(story: &'a Story) -> Self {
        let mut rounds: Vec<Round<'a>> = vec![];
        // Rounds by pick, time and input length; the few sharing those are told apart by
        // their input (the inputs are shared, not hashed whole).
        let mut index: HashMap<(Option<&str>, &str, usize), Vec<usize>> = HashMap::new();
        for record in &story.records {
            let parent = record.parent_record_id.as_deref();
            let key = (parent, record.created_at.as_str(), record.input_text.len());
            let same_key = index.entry(key).or_default();
            let found = same_key
                .iter()
                .copied()
                .find(|&at| rounds[at].records[0].input_text == record.input_text);
            let at = found.unwrap_or_else(|| {
                rounds.push(Round {
                    parent,
                    records: vec![],
                });
                same_key.push(rounds.len() - 1);
                rounds.len() - 1
            });
            rounds[at].records.push(record);
        }
        for round in &mut rounds {
            round.records.sort_by_key(|r| r.candidate);
        }
        let mut children: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
        for (at, round) in rounds.iter().enumerate() {
            children.entry(round.parent).or_default().push(at);
        }
        Self { rounds, children }
    }

    /// The rounds continuing `pick` (`None`: the opening), oldest first.
    pub fn rounds_after<'s>(&'s self, pick: Option<&'s str>) -> &'s [usize] {
        self.children.get(&pick).map_or(&[], Vec::as_slice)
    }
}

/// What became of `record`, a candidate of `round`, in `story`.
pub fn outcome(story: &Story, round: &Round, record: &CandidateRecord) -> Outcome {
    if record.chosen {
        Outcome::Chosen
    } else if story.pending.contains(&record.record_id) {
        Outcome::Waiting
    } else if record.rejected_all_at.is_some() || round.records.iter().any(|r| r.chosen) {
        Outcome::Rejected
    } else {
        Outcome::NotPicked
    }
}

impl Story {
    /// Moves the story to the round of `record_id`: the picks leading to it become the path,
    /// the text the one the round continued, and the round waits for a choice again; with
    /// `pick`, `record_id` is then taken (a candidate rejected before included). Later records
    /// stay, as with [`Story::undo`].
    pub fn go_to(&mut self, record_id: &str, pick: bool) -> Result<()> {
        let record = self
            .record(record_id)
            .ok_or_else(|| Error::Invalid(format!("no record {record_id} in the story")))?;
        let (parent, text, created_at) = (
            record.parent_record_id.clone(),
            record.input_text.to_string(),
            record.created_at.clone(),
        );
        let mut path = vec![];
        let mut cursor = parent.clone();
        while let Some(id) = cursor {
            if path.len() > self.records.len() {
                return Err(Error::Invalid(format!(
                    "the records leading to {record_id} form a loop"
                )));
            }
            cursor = self.record(&id).and_then(|r| r.parent_record_id.clone());
            path.push(id);
        }
        path.reverse();
        self.path = path;
        self.text = text;
        self.pending = self.round(parent.as_deref(), &created_at);
        if pick {
            self.choose(record_id, "human")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::story::testing::round;

    #[test]
    fn rounds_and_branches_form_the_tree() {
        let mut story = Story::new("Once");
        let first = round(&mut story, [" a", " b"], "1");
        let again = round(&mut story, [" c", " d"], "2");
        story.choose(&again[1], "human").unwrap();
        let after = round(&mut story, [" e", " f"], "3");
        let tree = Tree::new(&story);
        assert_eq!(tree.rounds.len(), 3);
        assert_eq!(tree.rounds_after(None), &[0, 1]);
        assert_eq!(tree.rounds_after(Some(&again[1])), &[2]);
        assert!(tree.rounds_after(Some(&again[0])).is_empty());
        let outcomes = |at: usize| {
            let round = &tree.rounds[at];
            round
                .records
                .iter()
                .map(|r| outcome(&story, round, r))
                .collect::<Vec<_>>()
        };
        // The first round was rejected as a whole only in the page (Regenerate); here it was
        // left without a decision.
        assert_eq!(outcomes(0), [Outcome::NotPicked, Outcome::NotPicked]);
        assert_eq!(outcomes(1), [Outcome::Rejected, Outcome::Chosen]);
        assert_eq!(outcomes(2), [Outcome::Waiting, Outcome::Waiting]);
        assert_eq!(tree.rounds[0].records[0].record_id, first[0]);
        assert_eq!(after.len(), 2);
    }

    #[test]
    fn going_to_a_rejected_candidate_takes_it_and_keeps_the_branch() {
        let mut story = Story::new("Once");
        let first = round(&mut story, [" a", " b"], "1");
        story.choose(&first[0], "human").unwrap();
        let second = round(&mut story, [" c", " d"], "2");
        story.choose(&second[0], "human").unwrap();
        assert_eq!(story.text, "Once a c");
        story.go_to(&first[1], true).unwrap();
        assert_eq!(
            (story.text.as_str(), story.path.clone()),
            ("Once b", vec![first[1].clone()])
        );
        assert!(story.pending.is_empty());
        // Back to the later round, as it waits: its chosen candidate is kept.
        story.go_to(&second[1], false).unwrap();
        assert_eq!(story.text, "Once a");
        assert_eq!(
            (story.path.clone(), story.pending.clone()),
            (vec![first[0].clone()], second.clone())
        );
        assert!(story.record(&second[0]).unwrap().chosen);
        assert!(story.go_to("missing", false).is_err());
    }
}
