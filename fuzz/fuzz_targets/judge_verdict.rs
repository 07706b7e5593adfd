//! A judge model's answer is untrusted text: any of it gives a grade on the
//! scale or a reason, and a pairwise preference or a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_worker::scorers::llm_judge::{parse_grade, parse_preference};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (min, max) in [(1.0, 5.0), (0.0, 10.0), (1.0, 2.0)] {
        if let Ok(grade) = parse_grade(&text, min, max) {
            assert!(
                (0.0..=1.0).contains(&grade.value),
                "grade {} off the [0, 1] scale",
                grade.value
            );
        }
    }
    let _ = parse_preference(&text);
});
