//! `tokenizer.json`: `Tokenizer::from_json`; a tokenizer that loads encodes and decodes a text
//! with every kind of character, and survives its own GGUF metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::tokenizer::Tokenizer;

const TEXT: &str = "Once upon a time, \u{202e}tac\u{202c} 🐈‍⬛ a\u{0}b\r\n\t ünïcödé 中文";

fuzz_target!(|data: &[u8]| {
    let Ok(tokenizer) = Tokenizer::from_json(data, "tokenizer.json") else {
        return;
    };
    if let Ok(ids) = tokenizer.encode(TEXT) {
        let _ = tokenizer.decode(&ids);
    }
    let vocab_size = tokenizer.max_token_id() as usize + 1;
    if let Ok(metadata) = tokenizer.gguf_metadata(vocab_size) {
        let _ = Tokenizer::from_gguf(&metadata.into_iter().collect(), "fuzz.gguf");
    }
});
