//! Unit tests of the table and the policies' random draws.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::policy::standard_normal;
use super::*;

#[test]
fn bundled_table_parses_without_warnings() {
    let (table, warnings) =
        StepTable::from_json(BUNDLED_JSON, "bundled", BUNDLED_VOCAB_SIZE).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(table.source.kind, "prior");
    assert_eq!(table.steps.len(), 10);
    assert!(table.steps.iter().all(|r| r.count == 0));
    assert_eq!(StepTable::bundled(), table);
}

#[test]
fn to_json_pretty_round_trips() {
    let table = StepTable::bundled();
    let (again, warnings) =
        StepTable::from_json(&table.to_json_pretty(), "round trip", BUNDLED_VOCAB_SIZE).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(again, table);
}

#[test]
fn least_squares_slope_of_a_line() {
    let xs = [1.0, 2.0, 4.0];
    let ys = [3.0, 5.0, 9.0];
    assert_eq!(least_squares_slope(&xs, &ys), 2.0);
}

#[test]
fn standard_normal_has_unit_variance() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let n = 20_000;
    let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
    let mean = draws.iter().sum::<f64>() / n as f64;
    let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var - 1.0).abs() < 0.04, "variance {var}");
}

#[test]
fn top_k_limit_stays_within_the_vocabulary() {
    let (table, warnings) = StepTable::bundled_for(50);
    assert!(warnings.iter().any(|w| w.path.ends_with("top_k.std")));
    assert!(table.top_k_limit() <= 50.0);
}
