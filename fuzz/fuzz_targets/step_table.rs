//! Step tables (`storywriter.step-params/1`): `StepTable::from_json`; a table that reads gives
//! rows for any step, and its JSON reads back to a table of the same rows. (Not bit for bit:
//! serde_json's default float parsing may be one unit in the last place off; see TESTING.md.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::params::StepTable;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((table, _)) = StepTable::from_json(text, "steps.json", 250_880) else {
        return;
    };
    for step in [0, 1, 2, 7, 50, 1000, u32::MAX] {
        let _ = table.row(step);
    }
    let (again, _) = StepTable::from_json(&table.to_json_pretty(), "again.json", 250_880)
        .expect("a table's own JSON reads back");
    let steps = |t: &StepTable| t.steps.iter().map(|r| r.step).collect::<Vec<_>>();
    assert_eq!(steps(&again), steps(&table));
});
