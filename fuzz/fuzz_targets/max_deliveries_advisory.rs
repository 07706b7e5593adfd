//! The max-deliveries advisory is JSON from the server (or from anyone who
//! can publish on `$JS.EVENT.>`): any bytes decode or are ignored, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_protocol::advisory::MaxDeliveriesAdvisory;

fuzz_target!(|data: &[u8]| {
    let _ = MaxDeliveriesAdvisory::decode(data);
});
