//! Frames byte for byte. The IPv6 vectors were produced by scapy 2.5 (an independent encoder,
//! checksum included); the ARP frames are written out field by field.

use super::*;

const MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
const OTHER: Mac = Mac([0x02, 0, 0, 0, 0, 0x99]);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn arp_frame(op: u8, sha: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.extend_from_slice(&[0; 18]); // padding to 60 bytes
    f
}

#[test]
fn arp_probe_is_a_request_from_0_0_0_0_for_the_vip() {
    assert_eq!(
        arp_probe(MAC, v4("10.97.0.50")),
        arp_frame(1, MAC, [0, 0, 0, 0], [10, 97, 0, 50])
    );
}

#[test]
fn arp_announcement_names_the_vip_as_sender_and_target() {
    let f = arp_announcement(MAC, v4("10.97.0.50"));
    assert_eq!(f, arp_frame(1, MAC, [10, 97, 0, 50], [10, 97, 0, 50]));
    assert_eq!(f.len(), 60);
}

#[test]
fn dad_probe_matches_scapy() {
    assert_eq!(
        ns_probe(MAC, v6("fd00:97::32")),
        hex("3333ff00003202000000000186dd6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff00003287007cac00000000fd000097000000000000000000000032")
    );
}

#[test]
fn unsolicited_na_with_override_matches_scapy() {
    assert_eq!(
        unsolicited_na(MAC, v6("fd00:97::32")),
        hex("33330000000102000000000186dd6000000000203afffd000097000000000000000000000032ff0200000000000000000000000000018800590b20000000fd0000970000000000000000000000320201020000000001")
    );
}

#[test]
fn a_reply_from_another_mac_for_the_vip_is_a_claim() {
    let reply = arp_frame(2, OTHER, [10, 97, 0, 50], [10, 97, 0, 1]);
    assert_eq!(
        claim_by_other(&reply, MAC, "10.97.0.50".parse().unwrap()),
        Some(OTHER)
    );
}

#[test]
fn a_probe_from_another_mac_for_the_vip_is_a_claim() {
    let probe = arp_probe(OTHER, v4("10.97.0.50"));
    assert_eq!(
        claim_by_other(&probe, MAC, "10.97.0.50".parse().unwrap()),
        Some(OTHER)
    );
    let ns = ns_probe(OTHER, v6("fd00:97::32"));
    assert_eq!(
        claim_by_other(&ns, MAC, "fd00:97::32".parse().unwrap()),
        Some(OTHER)
    );
}

#[test]
fn an_advertisement_from_another_mac_is_a_claim_naming_its_target_address_option() {
    let na = unsolicited_na(OTHER, v6("fd00:97::32"));
    assert_eq!(
        claim_by_other(&na, MAC, "fd00:97::32".parse().unwrap()),
        Some(OTHER)
    );
}

#[test]
fn our_own_frames_other_addresses_and_questions_are_not_claims() {
    let vip: IpAddr = "10.97.0.50".parse().unwrap();
    // Our own announcement, looped back to the packet socket.
    assert_eq!(
        claim_by_other(&arp_announcement(MAC, v4("10.97.0.50")), MAC, vip),
        None
    );
    // A client asking who has the VIP (its own address as sender).
    assert_eq!(
        claim_by_other(
            &arp_frame(1, OTHER, [10, 97, 0, 2], [10, 97, 0, 50]),
            MAC,
            vip
        ),
        None
    );
    // Another VIP.
    assert_eq!(
        claim_by_other(&arp_announcement(OTHER, v4("10.97.0.51")), MAC, vip),
        None
    );
    // An IPv6 frame when the VIP is IPv4, and the reverse.
    assert_eq!(
        claim_by_other(&unsolicited_na(OTHER, v6("fd00:97::32")), MAC, vip),
        None
    );
    assert_eq!(
        claim_by_other(
            &arp_announcement(OTHER, v4("10.97.0.50")),
            MAC,
            "fd00:97::32".parse().unwrap()
        ),
        None
    );
}

#[test]
fn truncated_frames_are_never_claims_and_never_panic() {
    let vip4: IpAddr = "10.97.0.50".parse().unwrap();
    let vip6: IpAddr = "fd00:97::32".parse().unwrap();
    for frame in [
        arp_announcement(OTHER, v4("10.97.0.50")),
        unsolicited_na(OTHER, v6("fd00:97::32")),
    ] {
        for len in 0..frame.len() {
            let cut = &frame[..len];
            let _ = claim_by_other(cut, MAC, vip4);
            let _ = claim_by_other(cut, MAC, vip6);
        }
    }
    // The ARP frame holds everything by byte 42; the NA's option is its last 8 bytes, without
    // which the Ethernet source is used.
    let na = unsolicited_na(OTHER, v6("fd00:97::32"));
    assert_eq!(claim_by_other(&na[..na.len() - 8], MAC, vip6), Some(OTHER));
    assert_eq!(claim_by_other(&na[..20], MAC, vip6), None);
}

#[test]
fn checksum_of_a_received_na_verifies_to_zero() {
    let na = unsolicited_na(MAC, v6("fd00:97::32"));
    let src = v6("fd00:97::32");
    let dst = v6("ff02::1");
    // Summing a message that carries its checksum gives 0 after complement.
    assert_eq!(icmpv6_checksum(src, dst, &na[54..]), 0);
}

#[test]
fn mac_parses_and_prints() {
    let m: Mac = "02:00:00:00:00:99".parse().unwrap();
    assert_eq!(m, OTHER);
    assert_eq!(m.to_string(), "02:00:00:00:00:99");
    assert!("02:00:00:00:00".parse::<Mac>().is_err());
    assert!("02:00:00:00:00:99:11".parse::<Mac>().is_err());
}
