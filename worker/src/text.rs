//! Text helpers shared by scorers, backends and the sandbox.

/// `text` cut to at most `max` characters (on a char boundary), with an
/// ellipsis when cut; newlines become spaces so details stay one line.
///
/// ```
/// assert_eq!(vigil_worker::text::short("abcdef", 4), "abc…");
/// assert_eq!(vigil_worker::text::short("a\nb", 10), "a b");
/// ```
pub fn short(text: &str, max: usize) -> String {
    if fits(text, max) {
        return text.to_string();
    }
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// [`short`] of an owned `text`, which is kept as it is when it already
/// fits (no copy).
pub fn shorten(text: String, max: usize) -> String {
    if fits(&text, max) {
        text
    } else {
        short(&text, max)
    }
}

/// Whether `text` is at most `max` bytes (so characters) with no control
/// character: [`short`] would return it unchanged.
fn fits(text: &str, max: usize) -> bool {
    text.len() <= max && !text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_cuts_on_char_boundaries() {
        assert_eq!(short("ééé", 2), "é…");
        assert_eq!(short("", 0), "");
    }
}
