//! Text helpers shared by scorers, backends and the sandbox.

/// `text` cut to at most `max` characters (on a char boundary), with an
/// ellipsis when cut; newlines become spaces so details stay one line.
///
/// ```
/// assert_eq!(vigil_worker::text::short("abcdef", 4), "abc…");
/// assert_eq!(vigil_worker::text::short("a\nb", 10), "a b");
/// ```
pub fn short(text: &str, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_cuts_on_char_boundaries() {
        assert_eq!(short("ééé", 2), "é…");
        assert_eq!(short("", 0), "");
    }
}
