//! The built-in PII and secret patterns, shared by the `pii` scorer (which
//! detects them in outputs) and the capture proxy (which redacts them before
//! a capture is published). Patterns only: this crate does no regex work.

/// The built-in kinds and their patterns (Rust `regex` syntax), in the order
/// details list them.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "email",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    ),
    // International (+CC ...), or a parenthesised area code, or NANP
    // 555-123-4567 with separators; bare digit runs are not phones.
    (
        "phone",
        r"(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}\b|\(\d{3}\)\s?\d{3}[\s.-]\d{4}\b|\b\d{3}[.-]\d{3}[.-]\d{4}\b)",
    ),
    ("credit_card", r"\b(?:\d[ -]?){12,18}\d\b"),
    ("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),
    (
        "api_key",
        r"\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})",
    ),
    (
        "aws_key",
        r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b|(?i)aws_secret_access_key\s*[:=]\s*[A-Za-z0-9/+=]{40}",
    ),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"),
    ("private_key", r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
];

/// Whether a digit string passes the Luhn check (payment card numbers do;
/// most other long numbers do not). `digits` holds digit values 0-9.
///
/// ```
/// assert!(vigil_protocol::pii::luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
/// assert!(!vigil_protocol::pii::luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
/// ```
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = u32::from(*d);
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}
