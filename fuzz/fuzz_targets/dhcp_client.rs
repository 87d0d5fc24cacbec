//! Fuzz target: the pure DHCPv4 client (`vipd::dhcp::client::Client`), fed UDP payloads from the
//! segment (anything there can send to port 68), timeouts and the driver's calls on a synthetic
//! clock.
//!
//! Input layout:
//! - bytes 0..6: the client's MAC; byte 6: flags (bit 0: start in INIT-REBOOT asking for the
//!   address in bytes 7..11; bit 1: a host name, as `kube-vip.io/loadbalancerHostname` gives;
//!   bits 4–7: the seed of transaction ids and jitter); bytes 7..11: that address;
//! - then steps, one selector byte each:
//!   - `0x00..=0x7F`: a reply built on a valid BOOTREPLY header carrying the client's current
//!     transaction id and MAC (which the client checks first, and a fuzzer would never guess),
//!     `yiaddr` from the next 4 bytes, then the next `selector` bytes as the options;
//!   - `0x80..=0xBF`: a raw payload: the next two bytes are its length (mod 1501), then that
//!     many bytes;
//!   - `0xC0..=0xCF`: the clock advances 2^(selector & 15) seconds, then `on_timeout`;
//!   - `0xD0`: the clock jumps to the client's deadline (if any), then `on_timeout`;
//!   - `0xD1`: `release`; `0xD2`: `decline` of the held address (else of the next 4 bytes);
//!   - `0xD3..=0xFF`: `on_timeout` now (usually early: must do nothing).
//!
//! Asserted after every call (besides "no panic"):
//! - every packet sent is a BOOTREQUEST with our MAC and the magic cookie;
//! - unicast goes only to the server of the lease held before the call; an `Unbound` names only
//!   the address of that lease (nothing else was ever put on the interface);
//! - a `Bound` lease is sane: a usable address; all timers or none (infinite lease); a lease of
//!   at least 1 s with T1 < T2 < expiry, counted from a REQUEST sent at or before now; and it is
//!   what `lease()` returns, in state Bound;
//! - a lease is held exactly in states Bound, Renewing and Rebinding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vipd::dhcp::client::{Action, Client, ClientConfig, Destination, Lease, State};

/// The fixed BOOTP header (RFC 2131 §2) and the magic cookie after it.
const HEADER_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A BOOTREPLY to `xid` for `mac`, offering `yiaddr`, with `options` after the cookie.
fn reply(xid: [u8; 4], mac: [u8; 6], yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; HEADER_LEN];
    p[0] = 2; // op: BOOTREPLY
    p[1] = 1; // htype: Ethernet
    p[2] = 6; // hlen
    p[4..8].copy_from_slice(&xid);
    p[16..20].copy_from_slice(&yiaddr);
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&MAGIC_COOKIE);
    p.extend_from_slice(options);
    p
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let slice: &'a [u8] = *rest;
    let (head, tail) = slice.split_at(n.min(slice.len()));
    *rest = tail;
    head
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    let mut a = [0u8; 4];
    a[..bytes.len().min(4)].copy_from_slice(&bytes[..bytes.len().min(4)]);
    Ipv4Addr::from(a)
}

struct Harness {
    client: Client,
    mac: [u8; 6],
    now: Instant,
    /// The transaction id of the last packet sent.
    xid: [u8; 4],
}

impl Harness {
    fn call(&mut self, f: impl FnOnce(&mut Client, Instant) -> Vec<Action>) {
        let before = self.client.lease().cloned();
        let out = f(&mut self.client, self.now);
        self.check(before.as_ref(), &out);
    }

    fn check(&mut self, before: Option<&Lease>, out: &[Action]) {
        for action in out {
            match action {
                Action::Send { to, payload } => {
                    assert!(payload.len() >= HEADER_LEN + 4, "a {}-byte packet", payload.len());
                    assert_eq!(payload[0], 1, "not a BOOTREQUEST");
                    assert_eq!(payload[2], 6, "hlen");
                    assert_eq!(payload[28..34], self.mac, "chaddr");
                    assert_eq!(payload[HEADER_LEN..HEADER_LEN + 4], MAGIC_COOKIE);
                    if let Destination::Unicast(server) = to {
                        assert_eq!(
                            Some(*server),
                            before.map(|l| l.server),
                            "unicast to a server we hold no lease from"
                        );
                    }
                    self.xid.copy_from_slice(&payload[4..8]);
                }
                Action::Bound(lease) => {
                    check_lease(lease, self.now);
                    assert_eq!(self.client.lease(), Some(lease));
                    assert_eq!(self.client.state(), State::Bound);
                }
                Action::Unbound(address) => assert_eq!(
                    Some(*address),
                    before.map(|l| l.address),
                    "removing an address we never held"
                ),
            }
        }
        let holds = matches!(
            self.client.state(),
            State::Bound | State::Renewing | State::Rebinding
        );
        assert_eq!(
            self.client.lease().is_some(),
            holds,
            "lease {:?} in state {:?}",
            self.client.lease(),
            self.client.state()
        );
    }
}

fn check_lease(lease: &Lease, now: Instant) {
    assert!(!lease.address.is_unspecified() && !lease.address.is_broadcast());
    match lease.duration {
        None => assert!(
            lease.t1.is_none() && lease.t2.is_none() && lease.expires.is_none(),
            "an infinite lease with timers: {lease:?}"
        ),
        Some(duration) => {
            assert!(duration >= Duration::from_secs(1));
            let (Some(t1), Some(t2), Some(expires)) = (lease.t1, lease.t2, lease.expires) else {
                panic!("a finite lease without timers: {lease:?}");
            };
            assert!(t1 < t2 && t2 < expires, "{lease:?}");
            // The lease counts from the first REQUEST of the exchange, which was sent already.
            assert!(expires - duration <= now, "a lease that starts in the future");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let (head, mut rest) = data.split_at(11);
    let mac: [u8; 6] = head[..6].try_into().expect("6 bytes");
    let flags = head[6];
    let mut cfg = ClientConfig::new(mac, u64::from(flags >> 4));
    if flags & 1 != 0 {
        cfg.requested = Some(ipv4(&head[7..11]));
    }
    if flags & 2 != 0 {
        cfg.hostname = Some("web.default".to_owned());
    }

    let mut h = Harness {
        client: Client::new(cfg),
        mac,
        now: Instant::now(),
        xid: [0; 4],
    };
    h.call(|c, now| c.start(now));

    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op {
            0x00..=0x7F => {
                let yiaddr = ipv4(take(&mut rest, 4)).octets();
                let payload = reply(h.xid, mac, yiaddr, take(&mut rest, usize::from(op)));
                h.call(|c, now| c.handle(now, &payload));
            }
            0x80..=0xBF => {
                let len = take(&mut rest, 2);
                let len = match len {
                    [a, b] => usize::from(u16::from_be_bytes([*a, *b])) % 1501,
                    _ => 0,
                };
                let payload = take(&mut rest, len).to_vec();
                h.call(|c, now| c.handle(now, &payload));
            }
            0xC0..=0xCF => {
                h.now += Duration::from_secs(1 << (op & 0x0f));
                h.call(|c, now| c.on_timeout(now));
            }
            0xD0 => {
                if let Some(deadline) = h.client.deadline() {
                    h.now = h.now.max(deadline);
                }
                h.call(|c, now| c.on_timeout(now));
            }
            0xD1 => h.call(|c, now| c.release(now)),
            0xD2 => {
                let address = match h.client.lease() {
                    Some(l) => l.address,
                    None => ipv4(take(&mut rest, 4)),
                };
                h.call(|c, now| c.decline(now, address));
            }
            0xD3..=0xFF => h.call(|c, now| c.on_timeout(now)),
        }
    }
});
