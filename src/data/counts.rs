//! Counts the writer reads about a story: words, tokens, steps, time spent and how much of the
//! model's window (its context) the story fills, from the story's records alone.

use crate::data::records::{parse_timestamp, CandidateRecord};
use crate::data::story::Story;
use crate::shared::FinishReason;

/// Longest pause counted as writing time, in milliseconds: longer ones count as this much.
pub const PAUSE_CAP_MS: u64 = 5 * 60 * 1000;

/// How the story sits in the model's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Room for more than a round of the longest candidates before anything is dropped.
    Fits,
    /// Within about one round of the point where the oldest tokens fall out of the window.
    NearlyFull,
    /// The oldest tokens no longer reach the model.
    Sliding,
}

/// A story's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// Words of the text (runs of non-whitespace).
    pub words: usize,
    /// Tokens of the text the records cover (those dropped from the window included).
    pub tokens: usize,
    /// Whether the text goes on past what the records cover (a hand edit since the last round;
    /// its tokens are not counted until the next round).
    pub untokenized_tail: bool,
    /// Steps taken (candidates picked on the current path).
    pub steps: usize,
    /// Time spent writing, in milliseconds: the story's events (rounds, picks, rejections,
    /// edits) in time order, each pause counted up to [`PAUSE_CAP_MS`].
    pub time_ms: u64,
    /// Tokens the next round feeds the model (the window as the records know it).
    pub window: usize,
    /// The model's context length, in tokens.
    pub context: usize,
    /// Tokens dropped from the window so far (the oldest text no longer seen).
    pub dropped: usize,
    /// How full the window is.
    pub fill: Fill,
}

impl Counts {
    /// The share of the model's context the window fills, in 0..=1.
    pub fn share(&self) -> f64 {
        self.window as f64 / self.context.max(1) as f64
    }
}

/// Counts `story` for a model with a context of `context` tokens.
pub fn counts(story: &Story, context: usize) -> Counts {
    let prefix = story.token_prefix();
    let window = prefix.as_ref().map_or(0, |p| p.ids.len());
    let covered = prefix.as_ref().map_or(0, |p| p.text_len);
    let dropped = dropped(story, context);
    let longest = latest_round(story)
        .map(|r| r.params.max_new_tokens)
        .unwrap_or(0);
    let room = context.saturating_sub(longest);
    let fill = if dropped > 0 {
        Fill::Sliding
    } else if window + longest > room {
        Fill::NearlyFull
    } else {
        Fill::Fits
    };
    Counts {
        words: story.text.split_whitespace().count(),
        tokens: dropped + window,
        untokenized_tail: covered < story.text.len(),
        steps: story.path.len(),
        time_ms: time_spent(&story.records),
        window,
        context,
        dropped,
        fill,
    }
}

/// The records along the current text: the path's picks, then the round waiting for a choice.
fn chain(story: &Story) -> Vec<&CandidateRecord> {
    let mut chain: Vec<&CandidateRecord> = story
        .path
        .iter()
        .filter_map(|id| story.record(id))
        .collect();
    chain.extend(story.pending_records().into_iter().take(1));
    chain
}

/// The round written last on the current path (waiting for a choice, or the last pick's).
fn latest_round(story: &Story) -> Option<&CandidateRecord> {
    chain(story).last().copied()
}

/// Tokens dropped from the front of the window along the current path: each round's input
/// continues the previous pick's ids, less the tokens the window slid by (a multiple of a
/// quarter of the context, see [`crate::session::round_input_ids`]). A round after a hand edit
/// that changed earlier text counts as not sliding.
fn dropped(story: &Story, context: usize) -> usize {
    let step = (context / 4).max(1);
    chain(story)
        .windows(2)
        .map(|pair| {
            let (before, after) = (pair[0], pair[1]);
            let mut fed = before.input_ids.followed_by(&before.output_ids).to_vec();
            if before.finish_reason == FinishReason::Eos {
                fed.pop();
            }
            (0..fed.len())
                .step_by(step)
                .find(|&d| after.input_ids.starts_with(&fed[d..]))
                .unwrap_or(0)
        })
        .sum()
}

/// Milliseconds of writing in `records`' events, each pause capped at [`PAUSE_CAP_MS`].
fn time_spent(records: &[CandidateRecord]) -> u64 {
    let mut times: Vec<_> = records
        .iter()
        .flat_map(|r| {
            [
                Some(&r.created_at),
                r.chosen_at.as_ref(),
                r.rejected_all_at.as_ref(),
                r.edited_at.as_ref(),
            ]
        })
        .flatten()
        .filter_map(|at| parse_timestamp(at))
        .collect();
    times.sort();
    times
        .windows(2)
        .filter_map(|pair| pair[1].duration_since(pair[0]).ok())
        .map(|gap| (gap.as_millis() as u64).min(PAUSE_CAP_MS))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::story::testing::round_with;

    /// Picks the first candidate of a round writing `text` with `ids` after `input_ids`.
    fn pick(story: &mut Story, input_ids: &[u32], text: &str, ids: &[u32], at: &str) {
        let id = round_with(story, input_ids, &[(text, ids)], at)[0].clone();
        story.choose(&id, "human").unwrap();
    }

    #[test]
    fn words_tokens_steps_and_time() {
        let mut story = Story::new("Once upon");
        pick(
            &mut story,
            &[1, 2],
            " a time",
            &[3, 4],
            "2026-12-04T10:00:00.000Z",
        );
        story.records[0].chosen_at = Some("2026-12-04T10:00:02.500Z".into());
        pick(
            &mut story,
            &[1, 2, 3, 4],
            " there",
            &[5],
            "2026-12-04T11:00:00.000Z",
        );
        let counts = counts(&story, 2048);
        assert_eq!(
            (counts.words, counts.tokens, counts.steps, counts.window),
            (5, 5, 2, 5)
        );
        assert!(!counts.untokenized_tail);
        // 2.5 s to the first pick, then a pause of an hour counted as five minutes; the second
        // pick's time is now (after its round), so it adds at least nothing.
        assert!(counts.time_ms >= 2_500 + PAUSE_CAP_MS);
        assert_eq!(counts.fill, Fill::Fits);
        story.edit_after_pick("Once upon a time there was");
        assert!(counts_of(&story).untokenized_tail);
    }

    fn counts_of(story: &Story) -> Counts {
        counts(story, 2048)
    }

    #[test]
    fn a_window_near_its_end_warns_and_a_slid_one_says_so() {
        // A context of 8 tokens; candidates of up to max_new_tokens tokens (the bundled
        // table's, larger than 2) leave no room: a story of 4 tokens is nearly full.
        let mut story = Story::new("a b");
        pick(&mut story, &[1, 2], " c", &[3], "t1");
        pick(&mut story, &[1, 2, 3, 9], " d", &[4], "t2");
        let near = counts(&story, 8);
        assert_eq!((near.dropped, near.fill), (0, Fill::NearlyFull));
        assert_eq!(counts(&story, 4096).fill, Fill::Fits);
        // The next round's window slid by a quarter of the context (2 tokens).
        pick(&mut story, &[3, 9, 4, 7], " e", &[5], "t3");
        let slid = counts(&story, 8);
        assert_eq!((slid.dropped, slid.fill), (2, Fill::Sliding));
        assert_eq!(slid.tokens, 2 + 5);
        assert!((slid.share() - 5.0 / 8.0).abs() < 1e-9);
    }
}
