//! `config.json` of a Hugging Face checkpoint: `BloomConfig::from_json`, and `open_hf`'s
//! field-naming errors (with an empty tokenizer, so a valid config fails there instead).
#![no_main]

use std::collections::HashMap;

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use storywriter::config::BloomConfig;
use storywriter::loader::{open_hf, TensorStore};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = BloomConfig::from_json(text, "config.json");
    let store = TensorStore::Loaded(HashMap::new());
    let opened = open_hf(text, b"", store, "fuzz", String::new(), &Device::Cpu);
    assert!(opened.is_err(), "an empty tokenizer.json was accepted");
});
