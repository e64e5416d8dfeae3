//! What the picker sees of a candidate: a fixed vector of numbers ([`FEATURE_NAMES`], version
//! [`FEATURE_VERSION`]) computed from its record and the other candidates of its round, and the
//! rounds of a log ([`rounds_from_records`]).
//!
//! Token statistics use the token ids (language-independent); the first-word features use the
//! first run of letters of the text. BLOOM's final hidden state (the record's `hidden_mean`,
//! taken while generating) follows the named features when asked for: `hidden_width` more
//! values ([`round_features`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::data::records::CandidateRecord;

/// Version of the feature set; a picker trained on another version is refused.
pub const FEATURE_VERSION: u32 = 2;

/// The features, in vector order.
pub const FEATURE_NAMES: [&str; 26] = [
    "temperature",
    "temperature_deviation_squared",
    "log1p_top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "log_max_new_tokens",
    "position_1",
    "position_2",
    "position_3_or_later",
    "log1p_tokens",
    "ends_sentence",
    "finished_eos",
    "logprob_mean",
    "logprob_min",
    "logprob_std",
    "repeated_trigrams",
    "repeated_tokens",
    "story_bigram_overlap",
    "other_candidates_overlap",
    "distinct_1",
    "distinct_2",
    "non_latin_share",
    "first_word_pronoun",
    "first_word_capitalized",
    "starts_with_punctuation",
];

/// Number of features.
pub const FEATURES: usize = FEATURE_NAMES.len();

/// The features that describe only how a candidate was sampled (the "params-only" baseline).
pub const PARAM_FEATURES: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];

/// A candidate's feature vector: the [`FEATURES`] named ones, then any hidden-state values.
pub type Features = Vec<f32>;

/// English personal and possessive pronouns (lowercase) for `first_word_pronoun`.
pub const PRONOUNS: [&str; 18] = [
    "i", "me", "my", "you", "your", "he", "him", "his", "she", "her", "it", "its", "we", "us",
    "our", "they", "them", "their",
];

/// A round: the candidates generated together for one story step, in display order, and the
/// one that was chosen, if exactly one was.
#[derive(Clone, Debug)]
pub struct PickRound {
    /// The story.
    pub story_id: String,
    /// The candidates (the last version of each record), in display order.
    pub records: Vec<CandidateRecord>,
    /// Index in `records` of the chosen candidate.
    pub chosen: Option<usize>,
}

impl PickRound {
    /// The feature vector of every candidate, with `hidden_width` hidden-state values (see
    /// [`round_features`]).
    pub fn features(&self, hidden_width: usize) -> Vec<Features> {
        let refs: Vec<&CandidateRecord> = self.records.iter().collect();
        round_features(&refs, hidden_width)
    }
}

/// The width of the records' hidden states when every record has one and all have the same
/// (non-zero) width; `None` otherwise.
pub fn common_hidden_width<'a>(
    records: impl IntoIterator<Item = &'a CandidateRecord>,
) -> Option<usize> {
    let mut width = None;
    for record in records {
        let w = record.hidden_mean.as_ref().map(|h| h.width())?;
        if w == 0 || width.is_some_and(|known| known != w) {
            return None;
        }
        width = Some(w);
    }
    width
}

/// What [`rounds_from_records`] found.
#[derive(Clone, Debug, Default)]
pub struct RoundSummary {
    /// Rounds with at least two candidates and exactly one choice.
    pub rounds: Vec<PickRound>,
    /// Rounds skipped because they had fewer than two candidates.
    pub too_few_candidates: usize,
    /// Rounds skipped because no candidate, or several, were chosen.
    pub undecided: usize,
}

/// Groups records into rounds: the candidates generated together (same story, step, parent
/// and generation time; the last version of each record id wins), each in display order, the
/// rounds sorted by story, step and time.
pub fn group_rounds(records: &[CandidateRecord]) -> Vec<Vec<CandidateRecord>> {
    let mut latest: HashMap<&str, &CandidateRecord> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for record in records {
        if latest.insert(&record.record_id, record).is_none() {
            order.push(&record.record_id);
        }
    }
    type Key<'a> = (&'a str, u32, Option<&'a str>, &'a str);
    let mut groups: BTreeMap<Key<'_>, Vec<&CandidateRecord>> = BTreeMap::new();
    for id in order {
        let r = latest[id];
        let key = (
            r.story_id.as_str(),
            r.step,
            r.parent_record_id.as_deref(),
            r.created_at.as_str(),
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_values()
        .map(|mut members| {
            members.sort_by_key(|r| (r.display_position.unwrap_or(r.candidate), r.candidate));
            members.into_iter().cloned().collect()
        })
        .collect()
}

/// The rounds of [`group_rounds`] a picker can learn from: at least two candidates, exactly
/// one chosen.
pub fn rounds_from_records(records: &[CandidateRecord]) -> RoundSummary {
    let mut summary = RoundSummary::default();
    for members in group_rounds(records) {
        let chosen: Vec<usize> = (0..members.len()).filter(|&i| members[i].chosen).collect();
        if members.len() < 2 {
            summary.too_few_candidates += 1;
        } else if chosen.len() != 1 {
            summary.undecided += 1;
        } else {
            summary.rounds.push(PickRound {
                story_id: members[0].story_id.clone(),
                records: members,
                chosen: Some(chosen[0]),
            });
        }
    }
    summary
}

/// The features of each candidate of a round (in the given order, which is the display order):
/// the named ones, then the first `hidden_width` values of its hidden state (zeros where it has
/// fewer: check the records with [`common_hidden_width`] first).
pub fn round_features(round: &[&CandidateRecord], hidden_width: usize) -> Vec<Features> {
    let token_sets: Vec<HashSet<u32>> = round
        .iter()
        .map(|r| content_ids(r).iter().copied().collect())
        .collect();
    round
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let others: Vec<f32> = (0..round.len())
                .filter(|&j| j != i)
                .map(|j| jaccard(&token_sets[i], &token_sets[j]))
                .collect();
            let mut features = candidate_features(record, i + 1, mean(&others)).to_vec();
            if hidden_width > 0 {
                let hidden = record.hidden_mean.as_ref().map(|h| h.to_f32());
                let mut hidden = hidden.unwrap_or_default();
                hidden.resize(hidden_width, 0.0);
                features.extend(hidden);
            }
            features
        })
        .collect()
}

/// The output ids without a final end-of-sequence token.
fn content_ids(record: &CandidateRecord) -> &[u32] {
    let ids = &record.output_ids;
    match record.finish_reason {
        crate::shared::FinishReason::Eos if !ids.is_empty() => &ids[..ids.len() - 1],
        _ => ids,
    }
}

fn candidate_features(
    record: &CandidateRecord,
    index: usize,
    other_overlap: f32,
) -> [f32; FEATURES] {
    let p = &record.params;
    let position = record.display_position.map_or(index, |d| d as usize);
    let ids = content_ids(record);
    let lp = &record.logprobs;
    let lp_mean = mean(lp);
    let lp_std =
        (lp.iter().map(|x| (x - lp_mean).powi(2)).sum::<f32>() / lp.len().max(1) as f32).sqrt();
    let lp_min = lp.iter().copied().fold(f32::INFINITY, f32::min);
    let text = record.output_text.trim();
    let first_word = first_word(&record.output_text);
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    let non_latin = letters.iter().filter(|c| !is_latin(**c)).count();
    let story_bigrams: HashSet<(u32, u32)> = record
        .input_ids
        .iter()
        .zip(record.input_ids.iter().skip(1))
        .collect();
    let bigrams: Vec<(u32, u32)> = ids.windows(2).map(|w| (w[0], w[1])).collect();
    let in_story = bigrams.iter().filter(|b| story_bigrams.contains(b)).count();
    let flag = |b: bool| f32::from(u8::from(b));
    [
        p.temperature,
        // With `temperature`, a parabola that can peak at any temperature; unlike t² it is not
        // nearly collinear with t, so the fit does not need huge opposite weights.
        (p.temperature - 1.0).powi(2),
        (p.top_k as f32).ln_1p(),
        p.top_p,
        p.typical_p,
        p.repetition_penalty,
        (p.max_new_tokens.max(1) as f32).ln(),
        flag(position == 1),
        flag(position == 2),
        flag(position >= 3),
        (ids.len() as f32).ln_1p(),
        flag(text.ends_with(['.', '!', '?', '"', '…', '。', '»'])),
        flag(record.finish_reason == crate::shared::FinishReason::Eos),
        lp_mean,
        if lp_min.is_finite() { lp_min } else { 0.0 },
        lp_std,
        repeated_share(ids, 3),
        repeated_token_share(record),
        ratio(in_story, bigrams.len()),
        other_overlap,
        distinct(ids, 1),
        distinct(ids, 2),
        ratio(non_latin, letters.len()),
        flag(PRONOUNS.contains(&first_word.to_lowercase().as_str())),
        flag(first_word.chars().next().is_some_and(char::is_uppercase)),
        flag(text.starts_with(|c: char| c.is_ascii_punctuation())),
    ]
}

/// Tokens of the story's end that [`repeated_token_share`] looks back on.
pub const RECENT_STORY_TOKENS: usize = 64;

/// Share of a candidate's tokens (a final end-of-sequence token aside) that repeat a token of
/// the story's last [`RECENT_STORY_TOKENS`] or an earlier token of the candidate.
pub fn repeated_token_share(record: &CandidateRecord) -> f32 {
    let ids = &record.input_ids;
    let recent = ids.window(
        ids.len().saturating_sub(RECENT_STORY_TOKENS),
        RECENT_STORY_TOKENS,
    );
    repeats_after(&recent.to_vec(), content_ids(record))
}

/// Share of `ids` repeating a token of the last [`RECENT_STORY_TOKENS`] of `story` or an
/// earlier one of `ids`.
fn repeats_after(story: &[u32], ids: &[u32]) -> f32 {
    let mut seen: HashSet<u32> = story[story.len().saturating_sub(RECENT_STORY_TOKENS)..]
        .iter()
        .copied()
        .collect();
    let repeats = ids.iter().filter(|&&id| !seen.insert(id)).count();
    ratio(repeats, ids.len())
}

/// The first run of letters of a text (what "first word" means for the features).
pub fn first_word(text: &str) -> String {
    text.chars()
        .skip_while(|c| !c.is_alphabetic())
        .take_while(|c| c.is_alphabetic())
        .collect()
}

fn is_latin(c: char) -> bool {
    matches!(c as u32, 0x41..=0x5a | 0x61..=0x7a | 0xc0..=0x24f | 0x1e00..=0x1eff)
}

fn mean(values: &[f32]) -> f32 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f32>() / values.len() as f32
    }
}

fn ratio(part: usize, whole: usize) -> f32 {
    if whole == 0 {
        0.0
    } else {
        part as f32 / whole as f32
    }
}

fn jaccard(a: &HashSet<u32>, b: &HashSet<u32>) -> f32 {
    ratio(a.intersection(b).count(), a.union(b).count())
}

/// Share of the n-grams that occur more than once.
fn repeated_share(ids: &[u32], n: usize) -> f32 {
    let grams: Vec<&[u32]> = ids.windows(n).collect();
    let mut counts: HashMap<&[u32], usize> = HashMap::new();
    for gram in &grams {
        *counts.entry(gram).or_default() += 1;
    }
    let repeated = grams.iter().filter(|g| counts[*g] > 1).count();
    ratio(repeated, grams.len())
}

/// Distinct n-grams over n-grams (1 for an empty or too short text).
fn distinct(ids: &[u32], n: usize) -> f32 {
    let grams: Vec<&[u32]> = ids.windows(n).collect();
    if grams.is_empty() {
        return 1.0;
    }
    let unique: HashSet<&[u32]> = grams.iter().copied().collect();
    ratio(unique.len(), grams.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_statistics() {
        assert_eq!(repeated_share(&[1, 2, 3, 1, 2, 3], 3), 0.5);
        assert_eq!(distinct(&[1, 1, 2, 2], 1), 0.5);
        assert_eq!(distinct(&[], 2), 1.0);
        assert!(is_latin('é') && !is_latin('猫') && !is_latin('ж'));
        // 7 repeats the story, the second 8 the candidate itself; 9 is new.
        assert_eq!(repeats_after(&[5, 6, 7], &[7, 8, 8, 9]), 0.5);
        let old_story: Vec<u32> = (0..RECENT_STORY_TOKENS as u32 + 1).collect();
        assert_eq!(repeats_after(&old_story, &[0, 1]), 0.5);
        assert_eq!(repeats_after(&[1], &[]), 0.0);
    }
}
