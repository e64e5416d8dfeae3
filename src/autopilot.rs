//! Whole stories without a person: each step a round of candidates (policies shuffled over
//! positions, see [`crate::data::design`]) and a [`Chooser`] that takes one, every record logged
//! as it is made, with `chosen_by` naming the chooser.
//!
//! Everything is reproducible from a run seed: story `i` has the id [`story_id`] and the seed
//! [`story_seed`], and step `s` of it draws its round from [`round_seed`], whatever else runs.
//! So a run can be split into shards (disjoint story indices) and resumed after a crash: a
//! story found in the log continues where its records stop (a logged round without a choice is
//! chosen, never generated again), and a round lost before it was logged is generated again
//! identically.

use std::ops::ControlFlow;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::design::{plan_round, Display};
use crate::data::params::{PolicyMix, StepTable};
use crate::data::records::CandidateRecord;
use crate::data::story::Story;
use crate::engine::generate::CachePool;
use crate::engine::loader::LoadedModel;
use crate::error::{Error, Result};
use crate::picker::simulated::SimulatedWriter;
use crate::picker::Picker;
use crate::session::write_round;

/// Takes one candidate of a round.
pub trait Chooser {
    /// The name recorded as `chosen_by`.
    fn name(&self) -> String;
    /// The index, in display order, of the candidate to take; `seed` is fixed per story step,
    /// for choosers that draw.
    fn choose(&mut self, story: &Story, round: &[&CandidateRecord], seed: u64) -> Result<usize>;
}

/// Takes the candidate whose policy is `step-mean` (else the first).
pub struct StepMeanChooser;

impl Chooser for StepMeanChooser {
    fn name(&self) -> String {
        "step-mean".into()
    }
    fn choose(&mut self, _: &Story, round: &[&CandidateRecord], _: u64) -> Result<usize> {
        Ok(round
            .iter()
            .position(|r| r.policy == "step-mean")
            .unwrap_or(0))
    }
}

/// Takes a candidate uniformly at random.
pub struct RandomChooser;

impl Chooser for RandomChooser {
    fn name(&self) -> String {
        "random".into()
    }
    fn choose(&mut self, _: &Story, round: &[&CandidateRecord], seed: u64) -> Result<usize> {
        Ok(ChaCha8Rng::seed_from_u64(seed).random_range(0..round.len().max(1)))
    }
}

/// Always takes the candidate shown at a position (1 = first).
pub struct PositionChooser(pub usize);

impl Chooser for PositionChooser {
    fn name(&self) -> String {
        format!("position-{}", self.0)
    }
    fn choose(&mut self, _: &Story, round: &[&CandidateRecord], _: u64) -> Result<usize> {
        Ok(self.0.clamp(1, round.len().max(1)) - 1)
    }
}

/// Takes the candidate a trained [`Picker`] finds most likely.
pub struct PickerChooser {
    /// The picker.
    pub picker: Picker,
    /// Its name in `chosen_by` (`picker:FILE`).
    pub name: String,
}

impl Chooser for PickerChooser {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn choose(&mut self, _: &Story, round: &[&CandidateRecord], _: u64) -> Result<usize> {
        let p = self.picker.probabilities(round)?;
        Ok((0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
            .unwrap_or(0))
    }
}

/// A scripted writer with a hidden rule (for tests and benchmarks of the picker).
impl Chooser for SimulatedWriter {
    fn name(&self) -> String {
        format!("simulated:{}", self.rule.name())
    }

    fn choose(&mut self, _: &Story, round: &[&CandidateRecord], seed: u64) -> Result<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if round.is_empty() {
            return Err(Error::Invalid("a round without candidates".into()));
        }
        let noisy = rng.random_bool(self.noise.clamp(0.0, 1.0));
        let scores: Option<Vec<f64>> = round.iter().map(|r| self.rule.score(r)).collect();
        match scores {
            Some(scores) if !noisy => {
                let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Ok(scores.iter().position(|&s| s == best).unwrap_or(0))
            }
            _ => Ok(rng.random_range(0..round.len())),
        }
    }
}

/// What a run writes: the table and policies, steps per story and the run seed.
pub struct AutoPlan {
    /// The per-step parameter table.
    pub table: StepTable,
    /// Its name, recorded with the candidates that read it.
    pub table_name: String,
    /// One policy per candidate.
    pub mix: PolicyMix,
    /// Steps per story.
    pub steps: u32,
    /// The run seed.
    pub seed: u64,
}

/// SplitMix64 of `a` and `b`: well-mixed, platform-independent seeds.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of story `index` of a run (< 2^53).
pub fn story_seed(run_seed: u64, index: u64) -> u64 {
    mix(run_seed, index.wrapping_add(1)) >> 11
}

/// The id of story `index` of a run (32 hex digits), the same on every machine.
pub fn story_id(run_seed: u64, index: u64) -> String {
    let seed = story_seed(run_seed, index);
    format!("{:016x}{:016x}", mix(seed, 0xa070), mix(seed, 0x5709))
}

/// The seed of step `step` of a story (< 2^53).
pub fn round_seed(story_seed: u64, step: u32) -> u64 {
    mix(story_seed, u64::from(step)) >> 11
}

/// Writes (or continues) story `index` to `plan.steps` steps: `resumed` is its state rebuilt
/// from the log, if any. `log` receives every new record version before the story moves on:
/// each round's candidates, then the chosen one's new version.
pub fn write_story(
    model: &LoadedModel,
    plan: &AutoPlan,
    prompt: &str,
    index: u64,
    resumed: Option<Story>,
    chooser: &mut dyn Chooser,
    log: &mut dyn FnMut(&[CandidateRecord]) -> Result<()>,
) -> Result<Story> {
    let seed = story_seed(plan.seed, index);
    let mut story = resumed.unwrap_or_else(|| {
        let mut story = Story::new(prompt);
        story.id = story_id(plan.seed, index);
        story
    });
    // The caches of the story's last rounds: each round runs only what they do not hold.
    let mut pool = CachePool::default();
    while story.path.len() < plan.steps as usize {
        let step = story.next_step();
        if story.pending.is_empty() {
            let planned = plan_round(
                &plan.table,
                &plan.table_name,
                &plan.mix,
                step,
                round_seed(seed, step),
                Display::Shuffled,
            );
            let records = write_round(&mut story, model, &mut pool, &planned, |_| {
                ControlFlow::Continue(())
            })?;
            log(&records)?;
        }
        let round = story.pending_records();
        let pick = chooser.choose(&story, &round, round_seed(seed, step) ^ 0xc4005e)?;
        let id = round
            .get(pick)
            .map(|r| r.record_id.clone())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "chooser picked candidate {pick} of {}",
                    round.len()
                ))
            })?;
        let chosen = story.choose(&id, &chooser.name())?.clone();
        log(&[chosen])?;
    }
    Ok(story)
}
