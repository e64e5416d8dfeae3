//! A story edited in a text field: what the writer changed, and nothing else.
//!
//! An HTML `<textarea>` gives back its value with every line break as `\n` (the HTML standard's
//! "normalize newlines": `\r\n` and `\r` become `\n`). The model writes `\r` now and then, so a
//! story shown in the editor and saved untouched would come back with the model's `\r`s turned
//! into `\n`s: the model's passages would no longer be its own, and the token ids the records
//! hold would no longer match the text. [`edited_text`] keeps the original's characters outside
//! the part the writer changed.

/// The story `original` after the writer edited it into `edited`, as a text field returns it:
/// `edited`'s common beginning and end with `original`, compared with `original`'s line breaks
/// normalized as a text field does, keep `original`'s own characters; the part between is
/// `edited`'s.
pub fn edited_text(original: &str, edited: &str) -> String {
    // Each character of `original` as the text field shows it, with its bytes in `original`.
    let mut shown: Vec<(char, std::ops::Range<usize>)> = vec![];
    let mut chars = original.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\r' {
            let end = match chars.peek() {
                Some(&(next, '\n')) => {
                    chars.next();
                    next + 1
                }
                _ => at + 1,
            };
            shown.push(('\n', at..end));
        } else {
            shown.push((c, at..at + c.len_utf8()));
        }
    }
    let typed: Vec<char> = edited.chars().collect();
    let prefix = shown
        .iter()
        .zip(&typed)
        .take_while(|((a, _), b)| a == *b)
        .count();
    let suffix = shown[prefix..]
        .iter()
        .rev()
        .zip(typed[prefix..].iter().rev())
        .take_while(|((a, _), b)| a == *b)
        .count();
    let kept_start = shown.get(prefix).map_or(original.len(), |(_, r)| r.start);
    let kept_end = shown
        .get(shown.len() - suffix)
        .map_or(original.len(), |(_, r)| r.start);
    let middle: String = typed[prefix..typed.len() - suffix].iter().collect();
    format!(
        "{}{middle}{}",
        &original[..kept_start],
        &original[kept_end..]
    )
}

#[cfg(test)]
mod tests {
    use super::edited_text;

    /// What a text field gives back for `text`.
    fn as_a_text_field_returns(text: &str) -> String {
        text.replace("\r\n", "\n").replace('\r', "\n")
    }

    #[test]
    fn an_untouched_story_keeps_its_carriage_returns() {
        let story = "It rang.\r\rThen\r\n silence\u{12}\u{fffd}.";
        assert_eq!(edited_text(story, &as_a_text_field_returns(story)), story);
    }

    #[test]
    fn words_added_at_the_end_keep_the_model_s_line_breaks_before_them() {
        let story = "The keeper\r\r55 waves";
        let edited = as_a_text_field_returns(story) + " The end.";
        assert_eq!(
            edited_text(story, &edited),
            "The keeper\r\r55 waves The end."
        );
    }

    #[test]
    fn a_change_in_the_middle_keeps_both_ends_as_they_were() {
        let story = "A\r\nB\rC and D\r";
        let edited = "A\nB\nC or D\n";
        assert_eq!(edited_text(story, edited), "A\r\nB\rC or D\r");
    }

    #[test]
    fn line_breaks_the_writer_typed_are_theirs() {
        assert_eq!(edited_text("one\rtwo", "one\n\nthree"), "one\r\nthree");
        assert_eq!(edited_text("one", "one\n"), "one\n");
        assert_eq!(edited_text("", "new\nstory"), "new\nstory");
    }

    #[test]
    fn everything_deleted_or_replaced() {
        assert_eq!(edited_text("a\rb", ""), "");
        assert_eq!(edited_text("a\rb", "xyz"), "xyz");
    }

    #[test]
    fn a_repeated_character_at_the_seam_is_counted_once() {
        // "aa" → "aaa": the common beginning and end must not overlap.
        assert_eq!(edited_text("aa", "aaa"), "aaa");
        assert_eq!(edited_text("aaa", "aa"), "aa");
        assert_eq!(edited_text("\r\r", "\n\n\n"), "\r\r\n");
    }
}
