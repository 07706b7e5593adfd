//! A `Retry-After` header comes from the model server: any text parses to a
//! bounded wait or to nothing, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};
use vigil_worker::retry::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        if let Some(wait) = parse_retry_after(text, now) {
            assert!(
                wait <= vigil_worker::retry::MAX_RETRY_AFTER,
                "{text:?} gave {wait:?}"
            );
        }
    }
});
