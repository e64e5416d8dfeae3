//! Simulated writers: scripted choosers with a hidden rule and label noise, to test whether the
//! picker learns what it should (and nothing from a writer who picks at random). They choose
//! for the autopilot through `crate::autopilot`'s `Chooser`.

use crate::data::records::CandidateRecord;
use crate::error::{Error, Result};
use crate::picker::features::{first_word, PRONOUNS};

/// A simulated writer's hidden rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Prefers a candidate whose first word is a pronoun.
    Pronoun,
    /// Prefers the candidate with the smallest share of repeated tokens.
    LessRepetition,
    /// Prefers the temperature nearest 0.8.
    TemperatureNear08,
    /// Picks uniformly at random.
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

    /// How much the rule likes a candidate (higher is better).
    pub fn score(self, record: &CandidateRecord) -> f64 {
        match self {
            Rule::Pronoun => {
                let word = first_word(&record.output_text);
                f64::from(u8::from(PRONOUNS.contains(&word.to_lowercase().as_str())))
            }
            Rule::LessRepetition => {
                let ids = &record.output_ids;
                let unique: std::collections::HashSet<&u32> = ids.iter().collect();
                -((ids.len() - unique.len()) as f64) / ids.len().max(1) as f64
            }
            Rule::TemperatureNear08 => -(f64::from(record.params.temperature) - 0.8).abs(),
            Rule::Random => 0.0,
        }
    }
}

/// A scripted writer: takes the candidate its rule likes best (ties at random), except that
/// with probability `noise` it takes one at random.
pub struct SimulatedWriter {
    /// The hidden rule.
    pub rule: Rule,
    /// Probability of a random pick instead.
    pub noise: f64,
}
