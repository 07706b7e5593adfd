//! A model server's response body is untrusted: any bytes give a completion
//! or an error kind, for both endpoint kinds, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_protocol::EndpointKind;
use vigil_worker::backend::parse_response;

fuzz_target!(|data: &[u8]| {
    for kind in [EndpointKind::Chat, EndpointKind::Completions] {
        let _ = parse_response(kind, data);
    }
});
