//! Messages between the page and the model worker (`web::protocol`): any text gives a message
//! or an error; a request that passes its checks serializes to JSON that parses to the same
//! request. (Events come only from the worker's own serializer, so they are only parsed.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use storywriter::web::protocol::{from_json, to_json, Event, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = from_json::<Request>(text) {
        if request.check().is_ok() {
            assert_eq!(from_json::<Request>(&to_json(&request)).ok(), Some(request));
        }
    }
    let _ = from_json::<Event>(text);
});
