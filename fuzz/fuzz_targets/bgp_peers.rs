//! Fuzz target: kube-vip's `bgp_peers` syntax (`addr:AS:password:multihop:port:mpbgp:bfd`,
//! comma separated, IPv6 in brackets) as `vipd_providers::static_peers::parse_bgp_peers` reads
//! it, and the value parsers shared with other settings, `parse_mpbgp_nexthop` and
//! `parse_bool`, all on the input as UTF-8 text.
//!
//! Asserted (besides "no panic"):
//! - `parse_bool` and `parse_mpbgp_nexthop` accept exactly their documented spellings;
//! - every parsed peer is usable: a unicast address, a non-zero AS (unless unnumbered), a
//!   non-zero port, a password of 1..=80 bytes, a BFD multiplier ≥ 1;
//! - errors name a 1-based entry and render;
//! - no password is ever shown: the input is parsed again twice with every entry's password
//!   field replaced by two different secrets of the same shape, and the two outcomes must be
//!   identical in `Display` (errors) or `Debug` (peers) — see `shared/passwords.rs`. Parsed
//!   peers must carry exactly the substituted password.

#![no_main]

#[path = "shared/passwords.rs"]
mod passwords;

use libfuzzer_sys::fuzz_target;
use passwords::{replace_in_bgp_peers, SECRET_A, SECRET_B};
use std::net::IpAddr;
use vipd_providers::static_peers::{parse_bgp_peers, parse_bool, parse_mpbgp_nexthop};
use vipd_providers::{PeerAddress, PeerSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if parse_bool(text).is_some() {
        assert!(matches!(
            text,
            "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
        ));
    }
    match parse_mpbgp_nexthop(text) {
        Ok(_) => assert!(matches!(
            text,
            "" | "fixed" | "auto_sourceip" | "auto_sourceif"
        )),
        Err(why) => assert!(!why.is_empty()),
    }

    match parse_bgp_peers(text) {
        Ok(peers) => peers.iter().for_each(check_peer),
        Err(e) => {
            assert!(e.entry >= 1);
            assert!(!e.to_string().is_empty());
        }
    }

    let a = parse_bgp_peers(&replace_in_bgp_peers(text, SECRET_A));
    let b = parse_bgp_peers(&replace_in_bgp_peers(text, SECRET_B));
    match (a, b) {
        (Err(ea), Err(eb)) => {
            let (ta, tb) = (ea.to_string(), eb.to_string());
            assert_eq!(ta, tb, "a bgp_peers error shows a password");
            if !text.contains(SECRET_A) {
                assert!(!ta.contains(SECRET_A), "a bgp_peers error shows a password: {ta}");
            }
        }
        (Ok(pa), Ok(pb)) => {
            assert_eq!(
                format!("{pa:?}"),
                format!("{pb:?}"),
                "the Debug of a peer shows its password"
            );
            for p in &pa {
                if let Some(pw) = &p.password {
                    assert_eq!(pw.expose(), SECRET_A, "a password read from the wrong field");
                }
            }
        }
        (a, b) => panic!(
            "the value of a password decided whether bgp_peers is valid: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    }
});

fn check_peer(p: &PeerSpec) {
    match &p.address {
        PeerAddress::Ip(IpAddr::V4(v4)) => {
            assert!(!v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast())
        }
        PeerAddress::Ip(IpAddr::V6(v6)) => assert!(!v6.is_unspecified() && !v6.is_multicast()),
        PeerAddress::Unnumbered(ifname) => assert!(!ifname.is_empty()),
    }
    assert!(
        p.remote_as != 0 || matches!(p.address, PeerAddress::Unnumbered(_)),
        "AS 0 for {}",
        p.address
    );
    assert_ne!(p.port, 0);
    if let Some(pw) = &p.password {
        assert!((1..=80).contains(&pw.expose().len()));
    }
    if let Some(bfd) = &p.bfd {
        assert!(bfd.multiplier >= 1);
    }
}
