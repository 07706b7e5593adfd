//! Any bytes on the wire decode to a RunSummary or an error, never a panic; what
//! decodes re-encodes and decodes to the same value (MessagePack, named fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_protocol::{RunSummary, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode::<RunSummary>(data) {
        let bytes = encode(&value).expect("a decoded value encodes");
        let again: RunSummary = decode(&bytes).expect("an encoded value decodes");
        // NaN != NaN: compare the encodings, which are canonical for one value.
        assert_eq!(encode(&again).expect("encodes"), bytes);
    }
});
