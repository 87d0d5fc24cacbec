//! Fuzz target: BGP peers from a Node's annotations
//! (`vipd_providers::annotations::peers_from_annotations`), all three key generations the
//! Equinix CCM (or an operator) writes.
//!
//! Input: UTF-8 text; the first line is the prefix (`metal.equinix.com`), every further line
//! one annotation `key=value` (a line without `=` is a key with an empty value).
//!
//! Asserted (besides "no panic"):
//! - found peers are usable: at least one, distinct addresses, non-zero peer and node AS,
//!   passwords of at most 80 bytes; errors and waits render;
//! - no password is ever shown: the annotations are read again in pairs with every `…bgp-pass`
//!   value replaced by two different secrets of the same shape — valid base64 of a short
//!   text, invalid base64, base64 of a text longer than 80 bytes — and the two outcomes must
//!   be identical in `Display` (errors) or `Debug` (peers); peers must carry exactly the
//!   decoded substitute.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use vipd_providers::annotations::{apply_connected_multihop, peers_from_annotations, AnnotationPeers};
use vipd_providers::PeerAddress;

/// Two interchangeable passwords, as annotated (base64) and decoded.
struct Pair {
    a: &'static str,
    b: &'static str,
    /// What `a` decodes to, when it is a usable password.
    decoded_a: Option<&'static str>,
}

const PAIRS: [Pair; 3] = [
    // base64 of "zQxAnnotPasswordAAzQx" / "zQxAnnotPasswordBBzQx".
    Pair {
        a: "elF4QW5ub3RQYXNzd29yZEFBelF4",
        b: "elF4QW5ub3RQYXNzd29yZEJCelF4",
        decoded_a: Some("zQxAnnotPasswordAAzQx"),
    },
    // Not base64 at all ('!').
    Pair {
        a: "zQx!notBase64!AAzQx",
        b: "zQx!notBase64!BBzQx",
        decoded_a: None,
    },
    // base64 of "zQx" + 78 × 'A' / 'B': 81 bytes, one more than a TCP-MD5 key holds.
    Pair {
        a: "elF4QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
        b: "elF4QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC",
        decoded_a: None,
    },
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let prefix = lines.next().unwrap_or("");
    let annotations: BTreeMap<String, String> = lines
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect();

    match peers_from_annotations(prefix, &annotations) {
        Ok(AnnotationPeers::Found { mut peers, .. }) => {
            assert!(!peers.is_empty(), "Found without peers");
            let addresses: BTreeSet<&PeerAddress> = peers.iter().map(|p| &p.address).collect();
            assert_eq!(addresses.len(), peers.len(), "one address, two sessions");
            for p in &peers {
                assert_ne!(p.remote_as, 0);
                assert!(p.local_as.is_some_and(|a| a != 0));
                if let Some(pw) = &p.password {
                    assert!(pw.expose().len() <= 80);
                }
            }
            // No connected subnet: every numbered peer needs multihop.
            apply_connected_multihop(&mut peers, &[]);
            assert!(peers
                .iter()
                .all(|p| p.multihop || !matches!(p.address, PeerAddress::Ip(_))));
        }
        Ok(AnnotationPeers::Waiting(w)) => assert!(!w.to_string().is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    for pair in &PAIRS {
        let a = peers_from_annotations(prefix, &with_passwords(&annotations, pair.a));
        let b = peers_from_annotations(prefix, &with_passwords(&annotations, pair.b));
        match (a, b) {
            (Err(ea), Err(eb)) => {
                let (ta, tb) = (ea.to_string(), eb.to_string());
                assert_eq!(ta, tb, "an annotation error shows a password");
                if !text.contains(pair.a) {
                    assert!(!ta.contains(pair.a), "an annotation error shows a password: {ta}");
                }
            }
            (Ok(ra), Ok(rb)) => {
                assert_eq!(
                    format!("{ra:?}"),
                    format!("{rb:?}"),
                    "the Debug of annotated peers shows a password"
                );
                if let AnnotationPeers::Found { peers, .. } = &ra {
                    for p in peers {
                        if let Some(pw) = &p.password {
                            assert_eq!(Some(pw.expose()), pair.decoded_a);
                        }
                    }
                }
            }
            (a, b) => panic!(
                "the value of a password decided the outcome: {:?} / {:?}",
                a.err(),
                b.err()
            ),
        }
    }
});

/// `annotations` with every non-blank password (a key ending in `bgp-pass`: the indexed
/// `…-bgp-pass` and the list generation's `…/bgp-pass`) replaced by `secret`.
fn with_passwords(annotations: &BTreeMap<String, String>, secret: &str) -> BTreeMap<String, String> {
    let mut out = annotations.clone();
    for (key, value) in out.iter_mut() {
        if key.ends_with("bgp-pass") && !value.trim().is_empty() {
            *value = secret.to_owned();
        }
    }
    out
}
