//! Lines of selection logs in any accepted spelling, mongoexport's included: a JSON value read
//! by `SelectionRecord::from_json` and fed to a `StatsBuilder`, whose table must then read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::params::StepTable;
use storywriter::stats::{SelectionRecord, StatsBuilder, StatsOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = SelectionRecord::from_json(&value);
    let mut builder = StatsBuilder::new(StatsOptions::default()).expect("default options");
    if builder.add_json(&value).is_ok() {
        if let Ok(table) = builder.finish("fuzz") {
            StepTable::from_json(&table.to_json_pretty(), "stats.json", 250_880)
                .expect("a table made from records reads back");
        }
    }
});
