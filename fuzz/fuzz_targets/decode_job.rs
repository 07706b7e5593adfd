//! Any bytes on the wire decode to a Job or an error, never a panic; what
//! decodes re-encodes and decodes to the same value (MessagePack, named fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_protocol::{Job, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode::<Job>(data) {
        let bytes = encode(&value).expect("a decoded value encodes");
        let again: Job = decode(&bytes).expect("an encoded value decodes");
        // NaN != NaN: compare the encodings, which are canonical for one value.
        assert_eq!(encode(&again).expect("encodes"), bytes);
    }
});
