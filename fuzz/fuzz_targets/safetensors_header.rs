//! A safetensors file's first bytes as the hub loader reads them: the header length, then the
//! JSON header checked against the shape of the tiny test model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::config::BloomConfig;
use storywriter::engine::st_header::{header_len, header_tensors};

fuzz_target!(|data: &[u8]| {
    let config = BloomConfig::from_json(
        include_str!("../../tests/fixtures/tiny-odd/config.json"),
        "config.json",
    )
    .expect("the fixture's config is valid");
    if let Ok(len) = header_len(data, "fuzz.safetensors") {
        let end = usize::try_from(len).map_or(data.len(), |len| data.len().min(8 + len));
        let _ = header_tensors(&data[8..end], &config, "fuzz.safetensors");
    }
});
