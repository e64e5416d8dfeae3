//! Unit tests of the table and the policies' random draws.

use rand::Rng;
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

/// serde_json reads floats correctly rounded (its `float_roundtrip` feature): a table written
/// and read back holds the same bits. Without it, a table the `step_table` fuzz target made
/// read back with `10.22222222222222` as `10.222222222222221`, and this test fails.
#[test]
fn a_table_written_and_read_back_is_bit_identical() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut table = StepTable::bundled();
    table.global.top_k.mean = 10.22222222222222;
    for row in &mut table.steps {
        for summary in [&mut row.temperature, &mut row.top_p, &mut row.typical_p] {
            // 17 significant digits, in 0.1..0.9 (inside every parameter's sane range).
            let mut q: Vec<f64> = (0..4).map(|_| rng.random_range(0.1..0.9)).collect();
            q[1..].sort_by(f64::total_cmp);
            *summary = ParamSummary {
                mean: q[0],
                std: q[0] / 8.0,
                p10: q[1],
                p50: q[2],
                p90: q[3],
            };
        }
    }
    let (again, warnings) =
        StepTable::from_json(&table.to_json_pretty(), "round trip", BUNDLED_VOCAB_SIZE).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again, table);
    for v in [
        10.222222222222221_f64,
        0.1 + 0.2,
        1.0 / 3.0,
        f64::MIN_POSITIVE,
        1e300,
    ] {
        let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
    }
    for _ in 0..100_000 {
        let v = f64::from_bits(rng.random::<u64>());
        if !v.is_finite() {
            continue;
        }
        let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
    }
}
