//! Lines of a record log (`storywriter.record/1` and `/2`): `parse_line`; a line holding a
//! record re-serializes to a line that parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::dataset::{parse_line, LineContent};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let LineContent::Record(record) = parse_line(text, 1, "records.jsonl") {
        let line = serde_json::to_string(&record).expect("a record serializes");
        match parse_line(&line, 2, "again.jsonl") {
            LineContent::Record(again) => assert_eq!(again, record),
            other => panic!("a parsed record does not read back: {other:?}\n{line}"),
        }
    }
});
