//! Step tables (`storywriter.step-params/1`): `StepTable::from_json`; a table that reads gives
//! rows for any step, and its JSON reads back to the same table, bit for bit (serde_json's
//! `float_roundtrip` feature; see TESTING.md).
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
    let json = table.to_json_pretty();
    let (again, _) =
        StepTable::from_json(&json, "again.json", 250_880).expect("a table's own JSON reads back");
    assert_eq!(again, table);
    assert_eq!(again.to_json_pretty(), json);
});
