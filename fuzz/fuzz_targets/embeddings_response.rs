//! An embeddings server's response body is untrusted: any bytes give vectors
//! or an error, and the cosine of any two vectors is finite or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_worker::scorers::embedding::{cosine, decode_embeddings};

fuzz_target!(|data: &[u8]| {
    if let Ok(vectors) = decode_embeddings(data, 2) {
        assert_eq!(vectors.len(), 2);
        if let Ok(c) = cosine(&vectors[0], &vectors[1]) {
            assert!(c.is_finite(), "cosine {c}");
        }
    }
});
