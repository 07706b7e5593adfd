//! Any bytes on the wire decode to a JobResult or an error, never a panic; what
//! decodes re-encodes and decodes to the same value (MessagePack, named fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_protocol::{JobResult, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode::<JobResult>(data) {
        let bytes = encode(&value).expect("a decoded value encodes");
        let again: JobResult = decode(&bytes).expect("an encoded value decodes");
        // NaN != NaN: compare the encodings, which are canonical for one value.
        assert_eq!(encode(&again).expect("encodes"), bytes);
    }
});
