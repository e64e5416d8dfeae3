//! A record's input held once: its text and token ids share their storage with the records
//! they continue.
//!
//! Every record's input is the whole story before it, so whole copies make a story of N steps
//! hold N² in memory. [`SharedText`] and [`SharedIds`] are persistent vectors (`imbl`'s RRB
//! trees): a record's input is its parent's input and output, cut where the story was cut, plus
//! what it adds, and only what it adds takes new memory. They read and write as a plain string
//! and a plain array, so the exported format keeps whole inputs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A persistent sequence of plain values, compared and copied a leaf (a slice) at a time.
#[derive(Clone, Default)]
struct Sequence<T: Clone>(imbl::Vector<T>);

impl<T: Copy + PartialEq> Sequence<T> {
    fn from_slice(items: &[T]) -> Self {
        Self(items.iter().copied().collect())
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn to_vec(&self) -> Vec<T> {
        let mut items = Vec::with_capacity(self.len());
        for leaf in self.0.leaves() {
            items.extend_from_slice(leaf);
        }
        items
    }

    fn followed_by(&self, more: &[T]) -> Self {
        let mut items = self.0.clone();
        items.extend(more.iter().copied());
        Self(items)
    }

    /// The `len` items after the first `skipped`, sharing their storage.
    fn part(&self, skipped: usize, len: usize) -> Self {
        let skipped = skipped.min(self.len());
        Self(self.0.skip(skipped).take(len.min(self.len() - skipped)))
    }

    /// How many leading items `items` shares with this sequence.
    fn common_prefix(&self, items: &[T]) -> usize {
        let mut done = 0;
        for leaf in self.0.leaves() {
            let other = &items[done..(done + leaf.len()).min(items.len())];
            let same = if leaf == other {
                leaf.len()
            } else {
                common_prefix(leaf.iter(), other.iter())
            };
            done += same;
            if same < leaf.len() {
                break;
            }
        }
        done
    }

    /// How many leading items `other` shares with this sequence, leaf against leaf.
    fn common_prefix_with(&self, other: &Self) -> usize {
        let (mut ours, mut theirs) = (self.0.leaves(), other.0.leaves());
        let (mut a, mut b): (&[T], &[T]) = (&[], &[]);
        let mut done = 0;
        loop {
            if a.is_empty() {
                let Some(leaf) = ours.next() else { return done };
                a = leaf;
            }
            if b.is_empty() {
                let Some(leaf) = theirs.next() else {
                    return done;
                };
                b = leaf;
            }
            let n = a.len().min(b.len());
            if a[..n] != b[..n] {
                return done + common_prefix(a.iter(), b.iter());
            }
            done += n;
            (a, b) = (&a[n..], &b[n..]);
        }
    }

    fn equals(&self, items: &[T]) -> bool {
        self.len() == items.len() && self.common_prefix(items) == items.len()
    }

    fn same_as(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
            || (self.len() == other.len() && self.common_prefix_with(other) == self.len())
    }
}

/// UTF-8 text whose beginning may be shared with other texts.
#[derive(Clone, Default)]
pub struct SharedText(Sequence<u8>);

impl SharedText {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// This text followed by `more` (only `more` takes new memory).
    pub fn followed_by(&self, more: &str) -> Self {
        Self(self.0.followed_by(more.as_bytes()))
    }

    /// How many leading bytes `text` shares with this text (not always a character boundary).
    pub fn common_prefix(&self, text: &str) -> usize {
        self.0.common_prefix(text.as_bytes())
    }

    /// How many leading bytes `text` shares with this text, at a character boundary of `text`.
    pub fn common_prefix_with(&self, text: &SharedText) -> usize {
        let mut kept = self.0.common_prefix_with(&text.0);
        while !text.is_char_boundary(kept) {
            kept -= 1;
        }
        kept
    }

    /// The text after its first `start` bytes (`start` at a character boundary).
    pub fn suffix(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.0.part(start, self.len()).to_vec()).into_owned()
    }

    /// `text` sharing with this one the longest beginning they have in common.
    pub fn continued_as(&self, text: &str) -> Self {
        let mut kept = self.common_prefix(text);
        while !text.is_char_boundary(kept) {
            kept -= 1;
        }
        self.prefix(kept).followed_by(&text[kept..])
    }

    /// Its first `len` bytes (`len` at a character boundary of this text).
    pub fn prefix(&self, len: usize) -> Self {
        Self(self.0.part(0, len))
    }

    /// Whether byte `index` starts a character (or is the end), as [`str::is_char_boundary`].
    pub fn is_char_boundary(&self, index: usize) -> bool {
        index == self.len()
            || (self.0)
                .0
                .get(index)
                .is_some_and(|&byte| (byte as i8) >= -0x40)
    }

    /// Whether `text` begins with this text.
    pub fn is_prefix_of(&self, text: &str) -> bool {
        self.len() <= text.len() && self.common_prefix(text) == self.len()
    }
}

impl From<&str> for SharedText {
    fn from(text: &str) -> Self {
        Self(Sequence::from_slice(text.as_bytes()))
    }
}

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        Self::from(text.as_str())
    }
}

impl fmt::Display for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every constructor starts from a `str` and cuts at character boundaries, so the bytes
        // are UTF-8 and nothing is replaced.
        f.write_str(&String::from_utf8_lossy(&self.0.to_vec()))
    }
}

impl fmt::Debug for SharedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl PartialEq for SharedText {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_as(&other.0)
    }
}

impl Eq for SharedText {}

impl PartialEq<str> for SharedText {
    fn eq(&self, other: &str) -> bool {
        self.0.equals(other.as_bytes())
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl PartialEq<String> for SharedText {
    fn eq(&self, other: &String) -> bool {
        self == other.as_str()
    }
}

impl Serialize for SharedText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SharedText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Token ids whose beginning may be shared with other sequences.
#[derive(Clone, Default)]
pub struct SharedIds(Sequence<u32>);

impl SharedIds {
    /// How many ids.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (self.0).0.leaves().flat_map(|leaf| leaf.iter().copied())
    }

    /// The ids as a plain vector.
    pub fn to_vec(&self) -> Vec<u32> {
        self.0.to_vec()
    }

    /// Whether these ids begin with `ids`.
    pub fn starts_with(&self, ids: &[u32]) -> bool {
        self.0.common_prefix(ids) == ids.len()
    }

    /// These ids followed by `more` (only `more` takes new memory).
    pub fn followed_by(&self, more: &[u32]) -> Self {
        Self(self.0.followed_by(more))
    }

    /// The run of these ids that `ids` begins with, as `(dropped, kept)`: `ids` starts with
    /// the `kept` ids after the first `dropped` (a context window drops the oldest ids). Of the
    /// places where `ids`' first id occurs, the one sharing the most wins (at most a window's
    /// length squared comparisons, when every id is the same).
    pub fn overlap(&self, ids: &[u32]) -> (usize, usize) {
        let Some(first) = ids.first() else {
            return (0, 0);
        };
        let base = self.to_vec();
        let mut best = (0, 0);
        let places = base.iter().enumerate().filter(|(_, id)| *id == first);
        for (dropped, _) in places {
            // A later place shares at most what is left after it.
            if base.len() - dropped <= best.1 {
                break;
            }
            let kept = common_prefix(base[dropped..].iter(), ids.iter());
            if kept > best.1 {
                best = (dropped, kept);
            }
        }
        best
    }

    /// The `kept` ids after the first `dropped`, sharing their storage with these.
    pub fn window(&self, dropped: usize, kept: usize) -> Self {
        Self(self.0.part(dropped, kept))
    }

    /// `ids` sharing with these the longest run [`Self::overlap`] finds.
    pub fn continued_as(&self, ids: &[u32]) -> Self {
        let (dropped, kept) = self.overlap(ids);
        self.window(dropped, kept).followed_by(&ids[kept..])
    }
}

impl From<Vec<u32>> for SharedIds {
    fn from(ids: Vec<u32>) -> Self {
        Self::from(ids.as_slice())
    }
}

impl From<&[u32]> for SharedIds {
    fn from(ids: &[u32]) -> Self {
        Self(Sequence::from_slice(ids))
    }
}

impl FromIterator<u32> for SharedIds {
    fn from_iter<I: IntoIterator<Item = u32>>(ids: I) -> Self {
        Self(Sequence(ids.into_iter().collect()))
    }
}

impl fmt::Debug for SharedIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for SharedIds {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_as(&other.0)
    }
}

impl Eq for SharedIds {}

impl PartialEq<[u32]> for SharedIds {
    fn eq(&self, other: &[u32]) -> bool {
        self.0.equals(other)
    }
}

impl PartialEq<Vec<u32>> for SharedIds {
    fn eq(&self, other: &Vec<u32>) -> bool {
        self == other.as_slice()
    }
}

impl Serialize for SharedIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for SharedIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u32>::deserialize(deserializer).map(Self::from)
    }
}

/// How many leading items two sequences share.
pub(crate) fn common_prefix<T: PartialEq>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
) -> usize {
    a.zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_continues_its_base_and_reads_back_whole() {
        let base = SharedText::from("Once upon a time");
        let grown = base.followed_by(", a fox é");
        assert_eq!(grown, "Once upon a time, a fox é");
        assert_eq!(grown.len(), "Once upon a time, a fox é".len());
        assert!(base.is_prefix_of(&grown.to_string()));
        assert!(!grown.is_prefix_of("Once upon a time"));
        // An edit inside the last character keeps the beginning and the whole new character.
        let edited = grown.continued_as("Once upon a time, a fox è!");
        assert_eq!(edited.to_string(), "Once upon a time, a fox è!");
        assert_eq!(SharedText::from(""), "");
        assert_eq!(
            serde_json::to_string(&edited).unwrap(),
            "\"Once upon a time, a fox è!\""
        );
        let back: SharedText = serde_json::from_str("\"a\\nb\"").unwrap();
        assert_eq!(back, "a\nb");
    }

    #[test]
    fn long_texts_compare_across_leaves() {
        let long: String = (0..5_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let shared = SharedText::from(&long[..3_000]).followed_by(&long[3_000..]);
        assert_eq!(shared, long);
        assert_eq!(shared.prefix(4_321), long[..4_321]);
        let accented = SharedText::from("aé");
        assert_eq!(
            (0..4)
                .map(|i| accented.is_char_boundary(i))
                .collect::<Vec<_>>(),
            [true, true, false, true]
        );
        assert!(!shared.followed_by("x").is_prefix_of(&long));
    }

    #[test]
    fn ids_find_the_window_they_continue() {
        let base = SharedIds::from((0..100).collect::<Vec<u32>>());
        // The window dropped the first 40 ids and two new ones follow.
        let input: Vec<u32> = (40..100).chain([7, 8]).collect();
        assert_eq!(base.overlap(&input), (40, 60));
        let shared = base.continued_as(&input);
        assert_eq!(shared, input);
        assert_eq!(shared.to_vec(), input);
        // Nothing in common: all of it is new.
        assert_eq!(base.overlap(&[500, 501]), (0, 0));
        assert_eq!(base.continued_as(&[500, 501]), vec![500, 501]);
        assert_eq!(base.continued_as(&[]), Vec::<u32>::new());
        assert_eq!(
            serde_json::to_string(&base.window(98, 5)).unwrap(),
            "[98,99]"
        );
        // The window's first id is a common one: it occurs 150 times before the kept run.
        let common: Vec<u32> = (0..3_000)
            .map(|i| {
                if i % 10 == 0 {
                    7
                } else {
                    8 + (i * i * 31 + i) % 99_991
                }
            })
            .collect();
        let slid: Vec<u32> = common[1_500..].iter().copied().chain([1, 2]).collect();
        assert_eq!(SharedIds::from(common).overlap(&slid), (1_500, 1_500));
    }
}
