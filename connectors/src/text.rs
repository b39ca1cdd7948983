//! Bounding text that goes into check details, answers and logs: cut in bytes, but never
//! inside a character.

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts `text` to [`prefix`]`(text, max)` and marks the cut with '…'; leaves a text of at
/// most `max` bytes alone.
pub fn ellipsize(text: &mut String, max: usize) {
    if text.len() > max {
        let keep = prefix(text, max).len();
        text.truncate(keep);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cuts_before_a_character_it_would_split() {
        // 'é' is two bytes: a cut at 2 would split it.
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("abc", 10), "abc");
        let mut text = "héllo".to_string();
        ellipsize(&mut text, 2);
        assert_eq!(text, "h…");
        let mut short = "abc".to_string();
        ellipsize(&mut short, 3);
        assert_eq!(short, "abc");
    }

    proptest! {
        #[test]
        fn a_prefix_is_within_max_and_as_long_as_it_can_be(text in "\\PC{0,40}", max in 0usize..80) {
            let cut = prefix(&text, max);
            prop_assert!(text.starts_with(cut));
            prop_assert!(cut.len() <= max);
            // One more character would go over max (or there is none).
            if let Some(next) = text[cut.len()..].chars().next() {
                prop_assert!(cut.len() + next.len_utf8() > max);
            }
        }
    }
}
