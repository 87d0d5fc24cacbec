//! Table tests of the client: replies fed in, messages and actions asserted.

use super::*;
use proptest::prelude::*;

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 120);

fn client(requested: Option<Ipv4Addr>) -> Client {
    let mut cfg = ClientConfig::new(MAC, 7);
    cfg.hostname = Some("web".into());
    cfg.requested = requested;
    Client::new(cfg)
}

/// The one packet of `actions`, decoded, with where it goes.
fn sent(actions: &[Action]) -> (Destination, Message) {
    let sends: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, payload } => Some((*to, Message::from_bytes(payload).unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "expected one packet in {actions:?}");
    sends.into_iter().next().unwrap()
}

fn kind(msg: &Message) -> MessageType {
    msg.opts().msg_type().unwrap()
}

fn opt(msg: &Message, code: OptionCode) -> Option<DhcpOption> {
    msg.opts().get(code).cloned()
}

/// A server's reply to `req` (same xid and chaddr).
fn reply(req: &Message, kind: MessageType, yiaddr: Ipv4Addr, lease: Option<u32>) -> Vec<u8> {
    let mut msg = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    msg.set_opcode(Opcode::BootReply);
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    msg.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    msg.opts_mut()
        .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    if let Some(secs) = lease {
        msg.opts_mut().insert(DhcpOption::AddressLeaseTime(secs));
    }
    msg.to_vec().unwrap()
}

fn bound_lease(actions: &[Action]) -> Lease {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Bound(l) => Some(l.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Bound in {actions:?}"))
}

/// DISCOVER → OFFER → REQUEST → ACK with a `lease`-second lease; returns the client and t0.
fn bound(lease: u32) -> (Client, Instant) {
    let t0 = Instant::now();
    let mut c = client(None);
    let (_, discover) = sent(&c.start(t0));
    let (_, request) = sent(&c.handle(
        t0,
        &reply(&discover, MessageType::Offer, OFFERED, Some(lease)),
    ));
    let acts = c.handle(t0, &reply(&request, MessageType::Ack, OFFERED, Some(lease)));
    bound_lease(&acts);
    (c, t0)
}

#[test]
fn discover_offer_request_ack_binds_with_client_id_and_hostname() {
    let t0 = Instant::now();
    let mut c = client(None);
    let (to, discover) = sent(&c.start(t0));
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(kind(&discover), MessageType::Discover);
    assert!(
        discover.flags().broadcast(),
        "no address yet: replies must be broadcast"
    );
    assert_eq!(discover.chaddr(), MAC);
    assert_eq!(
        opt(&discover, OptionCode::ClientIdentifier),
        Some(DhcpOption::ClientIdentifier(vec![
            1, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02
        ]))
    );
    assert_eq!(
        opt(&discover, OptionCode::Hostname),
        Some(DhcpOption::Hostname("web".into()))
    );
    assert_eq!(opt(&discover, OptionCode::RequestedIpAddress), None);

    let (to, request) = sent(&c.handle(
        t0,
        &reply(&discover, MessageType::Offer, OFFERED, Some(120)),
    ));
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(kind(&request), MessageType::Request);
    assert_eq!(
        request.xid(),
        discover.xid(),
        "REQUEST keeps the DISCOVER's xid"
    );
    assert_eq!(request.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        opt(&request, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        opt(&request, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        c.state(),
        State::Requesting {
            offered: OFFERED,
            server: SERVER
        }
    );

    let acts = c.handle(t0, &reply(&request, MessageType::Ack, OFFERED, Some(120)));
    let lease = bound_lease(&acts);
    assert_eq!(lease.address, OFFERED);
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(lease.t1, Some(t0 + Duration::from_secs(60)));
    assert_eq!(lease.t2, Some(t0 + Duration::from_secs(105)));
    assert_eq!(lease.expires, Some(t0 + Duration::from_secs(120)));
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.deadline(), lease.t1);
}

#[test]
fn lease_timers_count_from_the_request_not_from_a_late_answered_discover() {
    let t0 = Instant::now();
    let mut c = client(None);
    let (_, discover) = sent(&c.start(t0));
    let t3 = t0 + Duration::from_secs(3);
    let (_, request) = sent(&c.handle(
        t3,
        &reply(&discover, MessageType::Offer, OFFERED, Some(120)),
    ));
    let t4 = t0 + Duration::from_secs(4);
    let lease = bound_lease(&c.handle(t4, &reply(&request, MessageType::Ack, OFFERED, Some(120))));
    assert_eq!(lease.t1, Some(t3 + Duration::from_secs(60)));
    assert_eq!(lease.expires, Some(t3 + Duration::from_secs(120)));
}

#[test]
fn renew_is_unicast_at_t1_rebind_broadcast_at_t2_and_expiry_unbinds_and_rediscovers() {
    let (mut c, t0) = bound(120);
    assert!(
        c.on_timeout(t0 + Duration::from_secs(59)).is_empty(),
        "nothing before T1"
    );

    let t1 = t0 + Duration::from_secs(60);
    let (to, renew) = sent(&c.on_timeout(t1));
    assert_eq!(to, Destination::Unicast(SERVER));
    assert_eq!(kind(&renew), MessageType::Request);
    assert_eq!(renew.ciaddr(), OFFERED, "RENEWING fills ciaddr");
    assert_eq!(
        opt(&renew, OptionCode::ServerIdentifier),
        None,
        "no option 54 in RENEWING"
    );
    assert_eq!(opt(&renew, OptionCode::RequestedIpAddress), None);
    assert!(!renew.flags().broadcast());
    assert_eq!(c.state(), State::Renewing);
    // Half of the 45 s to T2 is below the 60 s minimum, so the next step is T2 itself.
    let t2 = t0 + Duration::from_secs(105);
    assert_eq!(c.deadline(), Some(t2));

    let (to, rebind) = sent(&c.on_timeout(t2));
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(rebind.ciaddr(), OFFERED);
    assert_ne!(rebind.xid(), renew.xid());
    assert_eq!(c.state(), State::Rebinding);
    let expiry = t0 + Duration::from_secs(120);
    assert_eq!(c.deadline(), Some(expiry));

    let acts = c.on_timeout(expiry);
    assert_eq!(
        acts[0],
        Action::Unbound(OFFERED),
        "the address goes at expiry: {acts:?}"
    );
    let (to, discover) = sent(&acts);
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(kind(&discover), MessageType::Discover);
    assert_eq!(
        opt(&discover, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED)),
        "asks for the old address back"
    );
    assert_eq!(c.lease(), None);
}

#[test]
fn an_ack_to_the_renewal_moves_every_timer() {
    let (mut c, t0) = bound(3600);
    let t1 = t0 + Duration::from_secs(1800);
    let (_, renew) = sent(&c.on_timeout(t1));
    assert_eq!(
        c.deadline(),
        Some(t1 + Duration::from_secs(675)),
        "half of the time to T2"
    );
    let acts = c.handle(t1, &reply(&renew, MessageType::Ack, OFFERED, Some(3600)));
    let lease = bound_lease(&acts);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Unbound(_))),
        "same address: {acts:?}"
    );
    assert_eq!(lease.expires, Some(t1 + Duration::from_secs(3600)));
    assert_eq!(c.deadline(), Some(t1 + Duration::from_secs(1800)));
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn a_renewal_ack_with_another_address_unbinds_the_old_one() {
    let (mut c, t0) = bound(120);
    let (_, renew) = sent(&c.on_timeout(t0 + Duration::from_secs(60)));
    let other = Ipv4Addr::new(10, 98, 0, 121);
    let acts = c.handle(t0, &reply(&renew, MessageType::Ack, other, Some(120)));
    assert_eq!(acts[0], Action::Unbound(OFFERED));
    assert_eq!(bound_lease(&acts).address, other);
}

#[test]
fn nak_while_renewing_unbinds_and_starts_over_without_the_refused_address() {
    let (mut c, t0) = bound(120);
    let t1 = t0 + Duration::from_secs(60);
    let (_, renew) = sent(&c.on_timeout(t1));
    let acts = c.handle(
        t1,
        &reply(&renew, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None),
    );
    assert_eq!(acts[0], Action::Unbound(OFFERED));
    let (_, discover) = sent(&acts);
    assert_eq!(kind(&discover), MessageType::Discover);
    assert_eq!(opt(&discover, OptionCode::RequestedIpAddress), None);
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn repeated_naks_back_off_instead_of_storming() {
    let t0 = Instant::now();
    let mut c = client(Some(OFFERED));
    let (_, req) = sent(&c.start(t0));
    // First NAK: DISCOVER at once.
    let (_, discover) = sent(&c.handle(
        t0,
        &reply(&req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None),
    ));
    let (_, request) =
        sent(&c.handle(t0, &reply(&discover, MessageType::Offer, OFFERED, Some(60))));
    // Second NAK: nothing sent now, a DISCOVER after 3..5 s.
    let acts = c.handle(
        t0,
        &reply(&request, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None),
    );
    assert!(acts.is_empty(), "{acts:?}");
    let wait = c.deadline().unwrap() - t0;
    assert!((3..=5).contains(&wait.as_secs()), "{wait:?}");
    let (_, again) = sent(&c.on_timeout(c.deadline().unwrap()));
    assert_eq!(kind(&again), MessageType::Discover);
}

#[test]
fn init_reboot_requests_the_known_address_then_falls_back_to_discover() {
    let t0 = Instant::now();
    let mut c = client(Some(OFFERED));
    let (to, req) = sent(&c.start(t0));
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(kind(&req), MessageType::Request);
    assert_eq!(req.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        opt(&req, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        opt(&req, OptionCode::ServerIdentifier),
        None,
        "INIT-REBOOT has no option 54"
    );
    // No answer: one retransmission, then DISCOVER (still asking for the address).
    let (_, again) = sent(&c.on_timeout(c.deadline().unwrap()));
    assert_eq!(kind(&again), MessageType::Request);
    assert_eq!(again.xid(), req.xid());
    let (_, discover) = sent(&c.on_timeout(c.deadline().unwrap()));
    assert_eq!(kind(&discover), MessageType::Discover);
    assert_eq!(
        opt(&discover, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED))
    );
}

#[test]
fn init_reboot_ack_binds() {
    let t0 = Instant::now();
    let mut c = client(Some(OFFERED));
    let (_, req) = sent(&c.start(t0));
    let acts = c.handle(t0, &reply(&req, MessageType::Ack, OFFERED, Some(600)));
    assert_eq!(bound_lease(&acts).address, OFFERED);
}

#[test]
fn discover_is_retransmitted_with_backoff_4_8_16_32_64_64_plus_minus_1s() {
    let t0 = Instant::now();
    let mut c = client(None);
    let (_, first) = sent(&c.start(t0));
    let mut now = t0;
    for base in [4u64, 8, 16, 32, 64, 64] {
        let next = c.deadline().unwrap();
        let gap = (next - now).as_millis() as u64;
        assert!(
            (base * 1000 - 1000..=base * 1000 + 1000).contains(&gap),
            "gap {gap} ms, expected {base} s ± 1 s"
        );
        assert!(
            c.on_timeout(next - Duration::from_millis(1)).is_empty(),
            "not before the deadline"
        );
        now = next;
        let (_, again) = sent(&c.on_timeout(now));
        assert_eq!(kind(&again), MessageType::Discover);
        assert_eq!(again.xid(), first.xid(), "retransmissions keep the xid");
        assert!(again.secs() >= 1, "secs counts from the first DISCOVER");
    }
}

#[test]
fn requesting_gives_up_after_four_requests_and_rediscovers() {
    let t0 = Instant::now();
    let mut c = client(None);
    let (_, discover) = sent(&c.start(t0));
    sent(&c.handle(t0, &reply(&discover, MessageType::Offer, OFFERED, Some(60))));
    for _ in 1..REQUEST_TRIES {
        let (_, req) = sent(&c.on_timeout(c.deadline().unwrap()));
        assert_eq!(kind(&req), MessageType::Request);
    }
    let (_, fresh) = sent(&c.on_timeout(c.deadline().unwrap()));
    assert_eq!(kind(&fresh), MessageType::Discover);
    assert_ne!(fresh.xid(), discover.xid());
}

#[test]
fn release_is_unicast_to_the_server_and_unbinds() {
    let (mut c, t0) = bound(120);
    let acts = c.release(t0);
    let (to, release) = sent(&acts);
    assert_eq!(to, Destination::Unicast(SERVER));
    assert_eq!(kind(&release), MessageType::Release);
    assert_eq!(release.ciaddr(), OFFERED);
    assert_eq!(
        opt(&release, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SERVER))
    );
    assert!(acts.contains(&Action::Unbound(OFFERED)));
    assert_eq!(c.state(), State::Stopped);
    assert_eq!(c.deadline(), None);
    assert!(c.release(t0).is_empty(), "a second release sends nothing");
}

#[test]
fn replies_that_are_not_ours_are_ignored() {
    let t0 = Instant::now();
    let mut c = client(None);
    let (_, discover) = sent(&c.start(t0));
    let good = reply(&discover, MessageType::Offer, OFFERED, Some(60));
    let mut wrong_xid = Message::from_bytes(&good).unwrap();
    wrong_xid.set_xid(discover.xid().wrapping_add(1));
    let mut wrong_mac = Message::from_bytes(&good).unwrap();
    wrong_mac.set_chaddr(&[2, 0, 0, 0, 0, 9]);
    let mut a_request = Message::from_bytes(&good).unwrap();
    a_request.set_opcode(Opcode::BootRequest);
    let mut no_server = Message::from_bytes(&good).unwrap();
    no_server.opts_mut().remove(OptionCode::ServerIdentifier);
    for bad in [wrong_xid, wrong_mac, a_request, no_server] {
        assert!(c.handle(t0, &bad.to_vec().unwrap()).is_empty(), "{bad:?}");
    }
    // An ACK while SELECTING (nothing requested yet) is not acted on either.
    assert!(c
        .handle(t0, &reply(&discover, MessageType::Ack, OFFERED, Some(60)))
        .is_empty());
    assert!(c.handle(t0, b"").is_empty());
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn an_ack_without_a_lease_time_is_ignored() {
    let t0 = Instant::now();
    let mut c = client(Some(OFFERED));
    let (_, req) = sent(&c.start(t0));
    assert!(c
        .handle(t0, &reply(&req, MessageType::Ack, OFFERED, None))
        .is_empty());
    assert!(c
        .handle(t0, &reply(&req, MessageType::Ack, OFFERED, Some(0)))
        .is_empty());
    assert_eq!(c.state(), State::Rebooting { requested: OFFERED });
}

#[test]
fn options_that_crash_dhcproto_are_dropped_and_the_rest_is_read() {
    let t0 = Instant::now();
    let mut c = client(Some(OFFERED));
    let (_, req) = sent(&c.start(t0));
    let mut bytes = reply(&req, MessageType::Ack, OFFERED, Some(600));
    assert_eq!(bytes.pop(), Some(255));
    // Option 155 (bulk lease query end time) of length 2 trips dhcproto's `len == 4` assertion;
    // option 81 (client FQDN) of length 0 underflows its `len - 3`.
    bytes.extend_from_slice(&[155, 2, 0, 0, 81, 0, 255]);
    let acts = c.handle(t0, &bytes);
    assert_eq!(bound_lease(&acts).address, OFFERED);
}

#[test]
fn an_infinite_lease_never_renews() {
    let (c, _) = bound(u32::MAX);
    assert_eq!(c.deadline(), None);
    assert_eq!(c.lease().unwrap().expires, None);
}

#[test]
fn server_timers_are_used_when_consistent() {
    let h = Duration::from_secs(3600);
    assert_eq!(
        timers(h, Some(10), Some(20)),
        (Duration::from_secs(10), Duration::from_secs(20))
    );
    assert_eq!(timers(h, None, None), (h / 2, h * 7 / 8));
    // T2 before T1, or beyond the lease: the defaults.
    assert_eq!(timers(h, Some(30), Some(20)), (h / 2, h * 7 / 8));
    assert_eq!(timers(h, Some(10), Some(4000)), (h / 2, h * 7 / 8));
    assert_eq!(
        timers(h, Some(10), None),
        (Duration::from_secs(10), h * 7 / 8)
    );
}

proptest! {
    /// Any bytes, in any state: ignored or acted on, never a panic.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), lease in 1u32..10_000) {
        let (mut c, t0) = bound(lease);
        c.handle(t0, &bytes);
        let mut fresh = client(Some(OFFERED));
        fresh.start(t0);
        fresh.handle(t0, &bytes);
    }

    /// Our header (xid, chaddr, cookie) followed by random option bytes: this reaches the option
    /// decoder, where dhcproto itself would panic on some lengths without `sanitize`.
    #[test]
    fn random_options_after_a_valid_header_never_panic(options in proptest::collection::vec(any::<u8>(), 0..300)) {
        let t0 = Instant::now();
        let mut c = client(Some(OFFERED));
        let (_, req) = sent(&c.start(t0));
        let mut bytes = reply(&req, MessageType::Ack, OFFERED, Some(600));
        bytes.truncate(240);
        bytes.extend_from_slice(&options);
        c.handle(t0, &bytes);
    }

    /// A real reply with random header bytes flipped (hlen, xid, op, options): never a panic,
    /// and a reply for another hardware address never binds.
    #[test]
    fn mutated_replies_never_panic(pos in 0usize..300, val in any::<u8>()) {
        let t0 = Instant::now();
        let mut c = client(Some(OFFERED));
        let (_, req) = sent(&c.start(t0));
        let mut bytes = reply(&req, MessageType::Ack, OFFERED, Some(600));
        let at = pos % bytes.len();
        bytes[at] = val;
        let acts = c.handle(t0, &bytes);
        // Read as the client reads it: the raw bytes may hold an option dhcproto panics on
        // (ClientFQDN shorter than 3 octets: a debug_assert), which is why the client sanitizes.
        if let Some(Ok(m)) = sanitize(&bytes).map(|b| Message::from_bytes(&b)) {
            if m.hlen() != 6 || m.chaddr() != MAC {
                prop_assert!(acts.is_empty());
            }
        }
    }
}

#[test]
fn a_declined_lease_is_dropped_announced_to_the_server_and_asked_anew_after_ten_seconds() {
    let (mut c, t0) = bound(3600);
    assert!(
        c.decline(t0, Ipv4Addr::new(10, 98, 0, 9)).is_empty(),
        "another address: nothing"
    );
    let acts = c.decline(t0, OFFERED);
    assert!(acts.contains(&Action::Unbound(OFFERED)), "{acts:?}");
    let (to, msg) = sent(&acts);
    assert_eq!(to, Destination::Broadcast);
    assert_eq!(kind(&msg), MessageType::Decline);
    assert_eq!(msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        opt(&msg, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        opt(&msg, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(opt(&msg, OptionCode::ParameterRequestList), None);
    assert!(!msg.flags().broadcast(), "table 5: flags 0");
    assert_eq!(c.lease(), None);
    // Nothing before the wait; then a DISCOVER that no longer asks for the declined address.
    assert_eq!(c.deadline(), Some(t0 + DECLINE_WAIT));
    assert!(c.on_timeout(t0 + DECLINE_WAIT / 2).is_empty());
    let (to, discover) = sent(&c.on_timeout(t0 + DECLINE_WAIT));
    assert_eq!(
        (to, kind(&discover)),
        (Destination::Broadcast, MessageType::Discover)
    );
    assert_eq!(opt(&discover, OptionCode::RequestedIpAddress), None);
    assert!(
        c.decline(t0 + DECLINE_WAIT, OFFERED).is_empty(),
        "no lease: nothing"
    );
}

/// Found by `mutated_replies_never_panic`: dhcproto panics (a `debug_assert!(len >= 3)`) on a
/// Client FQDN option (81) shorter than three octets. The client drops what it does not read,
/// so such a reply is handled exactly as the same reply without that option.
#[test]
fn a_client_fqdn_option_too_short_for_dhcproto_is_dropped_not_a_panic() {
    let t0 = Instant::now();
    let ack = |with_fqdn: bool| {
        let mut c = client(Some(OFFERED));
        let (_, req) = sent(&c.start(t0));
        let mut bytes = reply(&req, MessageType::Ack, OFFERED, Some(600));
        if with_fqdn {
            // Before the End option (the last 255 followed only by padding).
            let end = (0..bytes.len())
                .rev()
                .find(|&i| bytes[i] == 255 && bytes[i + 1..].iter().all(|b| *b == 0))
                .expect("an End option");
            bytes.splice(end..end, [81, 1, 0]);
        }
        c.handle(t0, &bytes)
    };
    let plain = ack(false);
    assert!(!plain.is_empty(), "the ACK is taken");
    assert_eq!(ack(true), plain);
}
