//! Fuzz target: the one UPnP text vipd parses itself, the Service annotation
//! `kube-vip.io/upnp-lease-duration` (a Go duration: `vipd::upnp::plan::parse_go_duration` and
//! `lease_secs`). The gateway's answers (SSDP, device description XML, SOAP responses) are all
//! parsed by the igd-next crate, not by vipd: see fuzz/README.md.
//!
//! Input: the annotation's value as UTF-8 text.
//!
//! Asserted (besides "no panic"):
//! - a parsed duration is below 10^12 s (the parser's documented cap);
//! - a leading `+` changes nothing (Go accepts one);
//! - `lease_secs` follows kube-vip's rule: 0 (permanent) exactly for a zero duration, at least
//!   1 s for any other valid one (sub-second leases round up), one hour when absent or invalid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use vipd::upnp::plan::{lease_secs, parse_go_duration, DEFAULT_LEASE};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_go_duration(text);
    if let Some(d) = parsed {
        assert!(d < Duration::from_secs(1_000_000_000_000), "{text:?} → {d:?}");
    }
    if !text.starts_with('+') {
        assert_eq!(parse_go_duration(&format!("+{text}")), parsed);
    }
    let default = u32::try_from(DEFAULT_LEASE.as_secs()).expect("an hour fits");
    let secs = lease_secs(Some(text));
    match parse_go_duration(text.trim()) {
        Some(d) if d.is_zero() => assert_eq!(secs, 0),
        Some(_) => assert!(secs >= 1),
        None => assert_eq!(secs, default),
    }
    assert_eq!(lease_secs(None), default);
});
