//! Simulated writers: scripted choosers with a hidden rule and label noise, to test whether the
//! picker learns what it should (and nothing from a writer who picks at random). They choose
//! for the autopilot through `crate::autopilot`'s `Chooser`.
//!
//! Where its rule rates several candidates alike, a writer takes the first of them on the page
//! (the position bias of people choosing from a list), not one at random: with the tiny test
//! model a rule such as "a pronoun first" separates few rounds' candidates, and coin flips in
//! the others would cap any picker near chance. A picker then has to learn the rule on top of
//! the position to beat the "always position 1" baseline.

use crate::data::records::CandidateRecord;
use crate::error::{Error, Result};
use crate::picker::features::{first_word, repeated_token_share, PRONOUNS};

/// A simulated writer's hidden rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Prefers a candidate whose first word is a pronoun.
    Pronoun,
    /// Prefers the candidate with the smallest share of tokens repeating the story's end or
    /// itself ([`repeated_token_share`]).
    LessRepetition,
    /// Prefers the temperature nearest 0.8.
    TemperatureNear08,
    /// Picks uniformly at random (ties do not fall to the first position).
    Random,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 4] = [
        Rule::Pronoun,
        Rule::LessRepetition,
        Rule::TemperatureNear08,
        Rule::Random,
    ];

    /// Its name: `pronoun`, `less-repetition`, `temperature-0.8`, `random`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Pronoun => "pronoun",
            Rule::LessRepetition => "less-repetition",
            Rule::TemperatureNear08 => "temperature-0.8",
            Rule::Random => "random",
        }
    }

    /// The rule of a name.
    pub fn from_name(name: &str) -> Result<Rule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown simulated writer {name:?} (expected pronoun, less-repetition, \
                     temperature-0.8 or random)"
                ))
            })
    }

    /// How much the rule likes a candidate (higher is better); `None` for the random writer,
    /// who likes none better than another.
    pub fn score(self, record: &CandidateRecord) -> Option<f64> {
        match self {
            Rule::Pronoun => {
                let word = first_word(&record.output_text);
                Some(f64::from(u8::from(
                    PRONOUNS.contains(&word.to_lowercase().as_str()),
                )))
            }
            Rule::LessRepetition => Some(-f64::from(repeated_token_share(record))),
            Rule::TemperatureNear08 => Some(-(f64::from(record.params.temperature) - 0.8).abs()),
            Rule::Random => None,
        }
    }
}

/// A scripted writer: takes the candidate its rule likes best (the first shown of those it
/// likes equally), except that with probability `noise` it takes one at random.
pub struct SimulatedWriter {
    /// The hidden rule.
    pub rule: Rule,
    /// Probability of a random pick instead.
    pub noise: f64,
}
