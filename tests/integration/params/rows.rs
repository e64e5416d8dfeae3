//! The rows beyond the table: tabulated rows as is, trends, interpolation.

use super::*;

#[test]
fn tabulated_steps_and_step_zero_are_returned_as_is() {
    let table = StepTable::bundled();
    assert_eq!(*table.row(3), table.steps[2]);
    assert_eq!(*table.row(0), table.global);
}

#[test]
fn steps_after_the_table_follow_the_last_rows_trend_then_flatten() {
    // Temperature falls by 0.02 a step over steps 1..=6; the global band is 0.8 ± 0.128.
    let steps: Vec<StepParams> = (1..=6)
        .map(|s| row(s, 0.9 - 0.02 * f64::from(s - 1), 40.0 + f64::from(s)))
        .collect();
    let table = table_of(steps);
    let last = table.steps.last().unwrap().clone();
    for (step, expected) in [(7, 0.78), (8, 0.76), (9, 0.74)] {
        let r = table.row(step);
        assert_eq!(r.step, step);
        assert_eq!(r.count, 0);
        assert!(
            (r.temperature.mean - expected).abs() < 1e-9,
            "{step}: {r:?}"
        );
        // Percentiles move with the mean, the std is the last row's.
        let delta = r.temperature.mean - last.temperature.mean;
        assert!((r.temperature.p90 - (last.temperature.p90 + delta)).abs() < 1e-9);
        assert_eq!(r.temperature.std, last.temperature.std);
        assert!((r.top_k.mean - (46.0 + f64::from(step - 6))).abs() < 1e-9);
    }
    // The trend stops TREND_HORIZON steps after the table, and never leaves the global band.
    let flat = table.row(6 + TREND_HORIZON);
    assert_eq!(
        *table.row(6 + TREND_HORIZON + 20),
        StepParams {
            step: 6 + TREND_HORIZON + 20,
            ..flat.clone().into_owned()
        }
    );
    let band_low = table.global.temperature.p10;
    assert!(
        (flat.temperature.mean - band_low.max(0.8 - 0.02 * f64::from(TREND_HORIZON))).abs() < 1e-9,
        "{:?}",
        flat.temperature
    );
}

#[test]
fn trend_is_kept_inside_the_global_band() {
    // A steep rise: 0.5 a step from 1.0; the global p90 is 0.8 + 1.2816 × 0.1.
    let steps: Vec<StepParams> = (1..=3)
        .map(|s| row(s, 1.0 + 0.5 * f64::from(s), 40.0))
        .collect();
    let table = table_of(steps);
    // The last mean (2.5) is above the band already: the band widens to it, no further.
    assert!((table.row(5).temperature.mean - 2.5).abs() < 1e-9);
}

#[test]
fn gaps_interpolate_and_short_tables_use_the_global_row() {
    let table = table_of(vec![row(2, 0.9, 40.0), row(6, 0.5, 60.0)]);
    let r = table.row(3);
    assert!((r.temperature.mean - 0.8).abs() < 1e-9);
    assert!((r.top_k.mean - 45.0).abs() < 1e-9);
    assert_eq!((r.step, r.count), (3, 0));
    // Before the first row: the first row.
    assert_eq!(
        *table.row(1),
        StepParams {
            step: 1,
            count: 0,
            ..table.steps[0].clone()
        }
    );
    // One row: no trend, the global row.
    let single = table_of(vec![row(1, 0.9, 40.0)]);
    assert_eq!(
        *single.row(4),
        StepParams {
            step: 4,
            count: 0,
            ..single.global.clone()
        }
    );
    // No rows at all: the global row.
    let empty = table_of(vec![]);
    assert_eq!(
        *empty.row(2),
        StepParams {
            step: 2,
            count: 0,
            ..empty.global.clone()
        }
    );
}
