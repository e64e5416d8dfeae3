//! The data layer: the per-step parameter table and its policies, candidate records, stories,
//! statistics over logs, and the dataset export. It does not depend on the engine (nor on
//! candle): the types both speak are in [`crate::shared`].

pub mod authorship;
pub mod counts;
pub mod dataset;
pub mod design;
pub mod events;
pub mod jsonl;
pub mod params;
pub mod records;
pub mod shared_input;
pub mod stats;
pub mod stored;
pub mod story;
pub mod text_field;
pub mod tree;
pub mod unpaired;
