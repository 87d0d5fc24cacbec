//! [pure] Text from outside (an annotation's value, a list of 10,000 addresses) bounded before
//! it becomes an Event note or a log line. `events.k8s.io/v1` refuses a note over 1,024 bytes,
//! so an unbounded note is an Event lost; an unbounded log line is a megabyte per bad value.

/// kube-apiserver's `NoteLengthLimit`.
pub const EVENT_NOTE_LIMIT: usize = 1024;
/// A log line's share of outside text: enough for any sensible value, and the count of the rest.
pub const LOG_LIMIT: usize = 1024;

/// `text` if it fits in `limit` bytes; else its head, cut at a character boundary, then
/// `… (N more bytes)`, the whole within `limit`.
pub fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    // The suffix's length depends on the count; the largest possible count bounds it.
    let longest_suffix = format!("… ({} more bytes)", text.len()).len();
    let mut head = limit.saturating_sub(longest_suffix);
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    format!("{}… ({} more bytes)", &text[..head], text.len() - head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_kept_whole() {
        assert_eq!(bounded("web: 192.0.2.10", 1024), "web: 192.0.2.10");
        assert_eq!(bounded(&"a".repeat(1024), 1024), "a".repeat(1024));
    }

    #[test]
    fn longer_text_is_cut_within_the_limit_and_says_how_much_is_left_out() {
        let out = bounded(&"a".repeat(1_000_000), 1024);
        assert!(out.len() <= 1024, "{}", out.len());
        let kept = out.find('…').unwrap();
        assert_eq!(&out[kept..], format!("… ({} more bytes)", 1_000_000 - kept));
        assert_eq!(kept, 1024 - "… (1000000 more bytes)".len());
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let text = "é".repeat(2000);
        let out = bounded(&text, 1024);
        assert!(out.len() <= 1024);
        assert!(out.starts_with("éé"));
        let head = out.find('…').unwrap();
        assert_eq!(head % 2, 0);
        assert_eq!(
            out,
            format!("{}… ({} more bytes)", &text[..head], text.len() - head)
        );
    }
}
