//! Shared by the `settings` and `bgp_peers` targets (included with `#[path]`): where kube-vip's
//! `bgp_peers` syntax puts an entry's password, and two interchangeable passwords.
//!
//! The password check is differential: the input is parsed twice, once with every password
//! replaced by [`SECRET_A`] and once by [`SECRET_B`]. The two secrets have the same length and
//! the same kinds of characters (letters only, none of them hex digits, no `:` `,` `[` `]` `;`
//! `=` or blanks), so no parser can tell them apart except by echoing them. Any difference
//! between the two outcomes' `Display`/`Debug` is therefore a password that was shown. This
//! needs no guess at which substrings of a message are "the password" (a short password such as
//! `1` is part of every message).

#![allow(dead_code)]

use std::ops::Range;

pub const SECRET_A: &str = "zQxFuzzPasswordAAzQx";
pub const SECRET_B: &str = "zQxFuzzPasswordBBzQx";

/// The byte range of the password field of one `bgp_peers` entry (already trimmed), as the
/// operator wrote it: `addr:AS:password:…`, the address being `[v6]`, `unnumbered:ifname` or
/// everything up to the first `:`. `None` when the entry has no (non-empty) password field.
///
/// For an entry whose address parses this is exactly where `parse_bgp_peers` reads the
/// password. It also finds the password in some malformed entries — `[fd00::1]65000:pw`, a
/// missing `:` after `]` — which is the point: an error about a malformed entry must not show
/// the password either.
pub fn password_span(entry: &str) -> Option<Range<usize>> {
    const UNNUMBERED: &str = "unnumbered:";
    let fields_start = if let Some(after) = entry.strip_prefix(UNNUMBERED) {
        UNNUMBERED.len() + after.find(':')? + 1
    } else if entry.starts_with('[') {
        // An unclosed bracket hides the whole entry (the parser shows none of it): no field.
        let after = entry.find(']')? + 1;
        if entry[after..].starts_with(':') {
            after + 1
        } else {
            after
        }
    } else {
        entry.find(':')? + 1
    };
    // Fields after the address: AS, then the password.
    let as_len = entry[fields_start..].find(':')?;
    let start = fields_start + as_len + 1;
    let len = entry[start..].find(':').unwrap_or(entry.len() - start);
    (len > 0).then_some(start..start + len)
}

/// `value` (a whole `bgp_peers` setting) with every entry's password replaced by `secret`.
/// Entries are split and trimmed the way `parse_bgp_peers` splits and trims them.
pub fn replace_in_bgp_peers(value: &str, secret: &str) -> String {
    value
        .split(',')
        .map(|entry| {
            let lead = entry.len() - entry.trim_start().len();
            match password_span(entry.trim()) {
                Some(span) => {
                    let mut out = entry.to_owned();
                    out.replace_range(lead + span.start..lead + span.end, secret);
                    out
                }
                None => entry.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
