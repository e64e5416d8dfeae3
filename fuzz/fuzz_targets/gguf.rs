//! GGUF files: header, metadata, tokenizer and tensor table (`open_gguf`), then the tensors
//! themselves (`build`) when the table checks out. Errors are fine; panics are not.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use storywriter::loader::open_gguf;

fuzz_target!(|data: &[u8]| {
    if let Ok(opened) = open_gguf(data, "fuzz.gguf", &Device::Cpu) {
        let _ = opened.build(&Device::Cpu);
    }
});
