//! Splitting a long message into platform-sized parts.
//!
//! For: fitting one agent reply into messages no longer than a platform allows
//! (Telegram 4096, Slack's text field), cutting where a reader expects a break.
//! Not for: formatting or escaping (each adapter escapes its parts after splitting, so
//! an escape sequence is never cut in two).
//!
//! Guarantees (property-tested): every part is non-empty and within the limit (unless
//! a single character is wider than the limit, then it travels alone); parts are
//! slices of the input at `char` boundaries, so UTF-8 is never broken; concatenating
//! the parts gives back the input exactly. Preference order for a cut: after a blank
//! line, after a line break, after whitespace, otherwise at the limit — backing off so
//! that a combining mark, variation selector, skin-tone modifier or zero-width joiner
//! stays with the character it modifies. A break is only taken in the second half of
//! the window, so a part is never needlessly tiny.

/// How a platform counts message length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Unicode scalar values.
    Chars,
    /// UTF-16 code units (what Telegram and Slack count: an emoji outside the BMP is 2).
    Utf16,
    /// UTF-8 bytes.
    Bytes,
}

impl Measure {
    fn width(self, c: char) -> usize {
        match self {
            Measure::Chars => 1,
            Measure::Utf16 => c.len_utf16(),
            Measure::Bytes => c.len_utf8(),
        }
    }

    /// The length of `s` in this measure.
    pub fn len(self, s: &str) -> usize {
        match self {
            Measure::Chars => s.chars().count(),
            Measure::Utf16 => s.encode_utf16().count(),
            Measure::Bytes => s.len(),
        }
    }
}

/// Splits `text` into parts of at most `max` units each (see the module docs). An
/// empty text gives no parts. `max` of 0 is treated as 1.
pub fn split_text(text: &str, max: usize, measure: Measure) -> Vec<&str> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // `end`: the longest prefix within `max`, always at a char boundary because it
        // only ever advances by whole characters.
        let mut used = 0usize;
        let mut end = 0usize;
        for c in rest.chars() {
            let w = measure.width(c);
            if used + w > max {
                break;
            }
            used += w;
            end += c.len_utf8();
        }
        if end == rest.len() {
            parts.push(rest);
            break;
        }
        if end == 0 {
            // A single character wider than the limit: it travels alone (progress is
            // guaranteed; no platform limit is below 4 units, so this is theoretical).
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let cut = best_cut(rest, end);
        // `cut` is in 1..=end and on a char boundary (see `best_cut`), so this split
        // cannot panic and both halves are valid UTF-8.
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts
}

/// Where to cut `rest`, given that `rest[..end]` is the longest prefix that fits.
/// Returns a char boundary in `1..=end`.
fn best_cut(rest: &str, end: usize) -> usize {
    let window = &rest[..end];
    let min = (end / 2).max(1);
    // Every candidate below is an index just past an ASCII separator or past a whole
    // character found by `rfind`/`char_indices`, hence a char boundary.
    if let Some(p) = window.rfind("\n\n") {
        if p + 2 >= min {
            return p + 2;
        }
    }
    if let Some(p) = window.rfind('\n') {
        if p + 1 >= min {
            return p + 1;
        }
    }
    if let Some((p, c)) = window.char_indices().rev().find(|(_, c)| c.is_whitespace()) {
        let cut = p + c.len_utf8();
        if cut >= min {
            return cut;
        }
    }
    // Hard cut at the limit, backing off over characters that attach to the previous
    // one (never below `min` ≥ 1, so progress is guaranteed; each step removes one
    // whole character, so `cut` stays a boundary).
    let mut cut = end;
    while cut > min {
        let next = rest[cut..].chars().next();
        let Some(prev) = rest[..cut].chars().next_back() else {
            break;
        };
        let back = cut - prev.len_utf8();
        if back >= min && (next.is_some_and(attaches_to_previous) || prev == '\u{200D}') {
            cut = back;
        } else {
            break;
        }
    }
    cut
}

/// Characters that modify the one before them (a cut just before them would separate
/// a user-perceived character). Not a full grapheme segmentation: the common cases.
fn attaches_to_previous(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'   // combining diacritical marks
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200C}'..='\u{200D}' // zero-width (non-)joiner
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}' // skin-tone modifiers
        | '\u{E0020}'..='\u{E007F}' // tag characters (flag sequences)
        | '\u{E0100}'..='\u{E01EF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_one_part_and_empty_is_none() {
        assert_eq!(split_text("hello", 10, Measure::Chars), vec!["hello"]);
        assert!(split_text("", 10, Measure::Chars).is_empty());
    }

    #[test]
    fn prefers_paragraph_then_line_then_space() {
        let text = "aaaa bbbb\ncccc\n\ndddd eeee";
        let parts = split_text(text, 20, Measure::Chars);
        assert_eq!(parts, vec!["aaaa bbbb\ncccc\n\n", "dddd eeee"]);
        let parts = split_text("aaaa bbbb\ncccc dddd", 16, Measure::Chars);
        assert_eq!(parts, vec!["aaaa bbbb\n", "cccc dddd"]);
        let parts = split_text("aaaa bbbb cccc", 12, Measure::Chars);
        assert_eq!(parts, vec!["aaaa bbbb ", "cccc"]);
    }

    #[test]
    fn an_early_break_is_not_taken() {
        // The only newline is at the very start: a hard cut at the limit instead.
        let text = format!("a\n{}", "b".repeat(30));
        let parts = split_text(&text, 10, Measure::Chars);
        assert_eq!(parts[0].len(), 10);
    }

    #[test]
    fn telegram_limit_with_multibyte_text() {
        // 5000 Cyrillic letters (2 bytes each) and no whitespace at all.
        let text = "ж".repeat(5000);
        let parts = split_text(&text, 4096, Measure::Utf16);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 4096);
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn astral_characters_count_two_utf16_units() {
        let text = "😀".repeat(3000); // 6000 UTF-16 units
        let parts = split_text(&text, 4096, Measure::Utf16);
        assert_eq!(parts[0].chars().count(), 2048);
        assert!(parts.iter().all(|p| Measure::Utf16.len(p) <= 4096));
    }

    #[test]
    fn joiners_stay_attached() {
        // "e" + combining acute accent, repeated: a hard cut must not strand an accent.
        let text = "e\u{301}".repeat(10);
        for part in split_text(&text, 5, Measure::Chars) {
            assert!(!part.starts_with('\u{301}'), "{part:?}");
        }
    }

    proptest! {
        #[test]
        fn parts_reassemble_fit_and_are_valid(text in "\\PC{0,300}|[a \\n😀ж\u{301}\u{200D}]{0,300}", max in 1usize..64) {
            for measure in [Measure::Chars, Measure::Utf16, Measure::Bytes] {
                let parts = split_text(&text, max, measure);
                prop_assert_eq!(parts.concat(), text.clone());
                for p in &parts {
                    prop_assert!(!p.is_empty());
                    // Within the limit, unless a single character is wider than it.
                    prop_assert!(measure.len(p) <= max || p.chars().count() == 1);
                }
            }
        }
    }
}
