//! Who wrote which words of a story: the writer (the opening, words added before a round, hand
//! edits) or a picked candidate. Derived from the records along the story's path and its current
//! text, so it needs nothing stored beyond them and survives a reload.

use crate::data::records::CandidateRecord;
use crate::data::story::Story;

/// Who wrote a passage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Author {
    /// The writer's own words.
    Writer,
    /// The picked candidate with this record id.
    Model(String),
}

/// A run of the story's text by one author: bytes `start..end` of the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Who wrote it.
    pub author: Author,
}

/// The story's text cut into passages by author, in order, covering the whole text.
///
/// Each picked candidate's input is compared with the text known before it (the previous
/// pick's input and output): what both begin and end with keeps its authors, what lies between
/// is the writer's (words added or edited by hand). The current text is compared so with the
/// last pick's, for edits made since.
pub fn passages(story: &Story) -> Vec<Passage> {
    let mut known = String::new();
    let mut spans: Vec<Passage> = vec![];
    for record in story.path.iter().filter_map(|id| story.record(id)) {
        let input_text = record.input_text.to_string();
        spans = carry(&spans, &known, &input_text);
        if let Some((start, original)) = kept_tokens(story, record) {
            // A reroll's input ends with the tokens it kept of another candidate: theirs.
            let mut relabeled = vec![];
            for span in &spans {
                push(
                    &mut relabeled,
                    span.start,
                    span.end.min(start),
                    span.author.clone(),
                );
            }
            push(&mut relabeled, start, input_text.len(), original);
            spans = relabeled;
        }
        let start = input_text.len();
        known = input_text + &record.output_text;
        push(
            &mut spans,
            start,
            known.len(),
            Author::Model(record.record_id.clone()),
        );
    }
    carry(&spans, &known, &story.text)
}

/// Where the tokens a rerolled candidate's input kept of the candidate it was rerolled from
/// begin, and that candidate as their author; `None` for other records.
fn kept_tokens(story: &Story, record: &CandidateRecord) -> Option<(usize, Author)> {
    let original = story.record(record.rerolled_from.as_deref()?)?;
    let input_text = record.input_text.to_string();
    let kept = input_text.strip_prefix(&original.input_text.to_string())?;
    original.output_text.starts_with(kept).then(|| {
        (
            original.input_text.len(),
            Author::Model(original.record_id.clone()),
        )
    })
}

/// `spans` of `old` carried over to `new`: the common beginning and end keep their authors, the
/// changed middle is the writer's.
fn carry(spans: &[Passage], old: &str, new: &str) -> Vec<Passage> {
    let prefix = common_prefix(old, new);
    let suffix = common_suffix(&old[prefix..], &new[prefix..]);
    let mut out = vec![];
    for span in spans {
        push(
            &mut out,
            span.start,
            span.end.min(prefix),
            span.author.clone(),
        );
    }
    push(&mut out, prefix, new.len() - suffix, Author::Writer);
    let (from, shift) = (old.len() - suffix, new.len() as isize - old.len() as isize);
    for span in spans {
        let start = span.start.max(from);
        let moved = |at: usize| (at as isize + shift) as usize;
        if start < span.end {
            push(&mut out, moved(start), moved(span.end), span.author.clone());
        }
    }
    out
}

/// Appends `start..end` by `author`, merged with the last passage when it continues it; empty
/// ranges are skipped.
fn push(spans: &mut Vec<Passage>, start: usize, end: usize, author: Author) {
    if start >= end {
        return;
    }
    match spans.last_mut() {
        Some(last) if last.author == author && last.end == start => last.end = end,
        _ => spans.push(Passage { start, end, author }),
    }
}

/// Bytes `a` and `b` begin with in common, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((at, _), _)| at)
}

/// Bytes `a` and `b` end with in common, on a character boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::story::testing::round_with;

    /// A story whose path picks, at step `i`, a candidate continuing `inputs[i]` with
    /// `outputs[i]`; its text is then `text` (edited by hand). Record ids become `r0`, `r1`, …
    fn story(inputs: &[&str], outputs: &[&str], text: &str) -> Story {
        let mut story = Story::new(inputs[0]);
        for (i, (input, output)) in inputs.iter().zip(outputs).enumerate() {
            story.text = input.to_string();
            let id = round_with(&mut story, &[1], &[(output, &[1])], "t")[0].clone();
            story.choose(&id, "human").unwrap();
            let renamed = format!("r{i}");
            for record in &mut story.records {
                if record.record_id == id {
                    record.record_id = renamed.clone();
                }
            }
            *story.path.last_mut().unwrap() = renamed;
        }
        story.text = text.to_string();
        story
    }

    /// The passages as (text, author) pairs, `W` for the writer.
    fn shown(story: &Story) -> Vec<(String, String)> {
        passages(story)
            .into_iter()
            .map(|p| {
                let who = match p.author {
                    Author::Writer => "W".to_string(),
                    Author::Model(id) => id,
                };
                (story.text[p.start..p.end].to_string(), who)
            })
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(t, w)| (t.to_string(), w.to_string()))
            .collect()
    }

    #[test]
    fn a_new_story_is_the_writers() {
        let story = Story::new("Once upon");
        assert_eq!(shown(&story), pairs(&[("Once upon", "W")]));
        assert!(passages(&Story::new("")).is_empty());
    }

    #[test]
    fn picks_added_words_and_edits_keep_their_authors() {
        // Opening, a pick, the writer's added words, a second pick, then a hand edit of one
        // word inside the first pick.
        let story = story(
            &["Once", "Once a cat. Then"],
            &[" a cat.", " it slept."],
            "Once a dog. Then it slept.",
        );
        assert_eq!(
            shown(&story),
            pairs(&[
                ("Once", "W"),
                (" a ", "r0"),
                ("dog", "W"),
                (".", "r0"),
                (" Then", "W"),
                (" it slept.", "r1"),
            ])
        );
    }

    #[test]
    fn passages_cover_the_text_on_character_boundaries() {
        let story = story(&["Été"], &[" 😀 à"], "Été 😀 é");
        let all = passages(&story);
        assert_eq!(all.first().map(|p| p.start), Some(0));
        assert_eq!(all.last().map(|p| p.end), Some(story.text.len()));
        for pair in all.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert!(all
            .iter()
            .all(|p| story.text.is_char_boundary(p.start) && story.text.is_char_boundary(p.end)));
        assert_eq!(
            shown(&story),
            pairs(&[("Été", "W"), (" 😀 ", "r0"), ("é", "W")])
        );
    }

    #[test]
    fn a_rerolls_kept_tokens_stay_the_original_candidates() {
        // r0 wrote " a cat."; a reroll kept " a" of it and wrote " dog." after.
        let mut story = story(&["Once"], &[" a cat."], "Once a cat.");
        story.go_to("r0", false).unwrap();
        story.edit("Once a");
        let id = round_with(&mut story, &[1], &[(" dog.", &[1])], "t")[0].clone();
        for record in &mut story.records {
            if record.record_id == id {
                record.rerolled_from = Some("r0".into());
            }
        }
        story.choose(&id, "human").unwrap();
        assert_eq!(
            shown(&story),
            pairs(&[("Once", "W"), (" a", "r0"), (" dog.", &id)])
        );
    }

    #[test]
    fn a_text_cut_short_by_hand_loses_the_cut_passages() {
        let story = story(&["Once"], &[" upon a time"], "Once upon");
        assert_eq!(shown(&story), pairs(&[("Once", "W"), (" upon", "r0")]));
    }
}
