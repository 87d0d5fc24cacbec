//! vipd's DHCP client (`vipd::dhcp::edge::DhcpVip`: macvlan, socket, RFC 2131 client, address)
//! against a real dnsmasq: acquire, renew (seen in dnsmasq's lease file), survive a vanished
//! server, keep the address across a restart with the same MAC, release. Needs root and dnsmasq.

#[macro_use]
extern crate vipd_testbed;
use vipd_testbed as support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::cluster::in_netns;
use support::dnsmasq::{DhcpBed, NEEDS, PARENT, SERVER};
use support::{holds_for, run_ok, wait_until_or_explain, VIPD_NEEDS};
use vipd::dhcp::client::Lease;
use vipd::dhcp::edge::{DhcpSpec, DhcpVip, Stop};
use vipd::dhcp::naming::format_mac;

const MAC: [u8; 6] = [0x02, 0x56, 0x49, 0x50, 0x44, 0x01];
const MACVLAN: &str = "vip-1a2b3c4d";
/// dnsmasq grants at least 2 minutes; T1 = 6 s makes the renewals observable within a test.
const T1_SECS: u64 = 6;

fn spec(requested: Option<Ipv4Addr>) -> DhcpSpec {
    DhcpSpec {
        parent: PARENT.into(),
        ifname: MACVLAN.into(),
        mac: MAC,
        hostname: Some("web".into()),
        requested,
        alias: String::new(),
        hold_address: true,
    }
}

async fn wait_for_lease(vip: &DhcpVip) -> Lease {
    let mut rx = vip.lease();
    let lease = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|l| l.is_some()))
        .await
        .expect("a lease within 30 s")
        .expect("the client task is alive");
    lease.clone().expect("bound")
}

#[test]
fn lease_renewal_restart_vanished_server_and_release_against_dnsmasq() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    // dnsmasq's ICMP check before each new offer stays on (a real server's behaviour): the
    // first DISCOVER goes unanswered for ~3 s, so the client must retransmit.
    let mut bed = DhcpBed::setup(
        "2m",
        &[
            &format!("dhcp-option=option:T1,{T1_SECS}"),
            "dhcp-option=option:T2,10",
        ],
    );
    let mac = format_mac(&MAC);
    let explain = |bed: &DhcpBed| {
        format!(
            "---- lease file ----\n{:?}\n---- dnsmasq ----\n{}",
            bed.leases(),
            bed.dnsmasq.log_tail(30)
        )
    };
    let lan = bed.lan.clone();

    // 1. Acquire: DISCOVER/OFFER/REQUEST/ACK; the address is on the macvlan, dnsmasq has the
    // lease under our MAC, client id 01:<mac> and hostname.
    let (address, first_expiry) = in_netns(&lan, async {
        let vip = DhcpVip::start(spec(None), 1).await.expect("start");
        let lease = wait_for_lease(&vip).await;
        let ip = lease.address.to_string();
        assert!(
            (100..=150).contains(&lease.address.octets()[3]) && ip.starts_with("10.98.0."),
            "{lease:?}"
        );
        assert_eq!(lease.server.to_string(), SERVER);
        assert_eq!(lease.duration, Some(Duration::from_secs(120)));
        assert_eq!(bed.addresses_on(MACVLAN), vec![format!("{ip}/32")]);
        let line = bed
            .lease_for(&mac)
            .unwrap_or_else(|| panic!("{}", explain(&bed)));
        assert_eq!(line.ip, ip);
        assert_eq!(line.hostname, "web");
        assert_eq!(line.client_id, format!("01:{mac}"));
        eprintln!("acquired {ip}; lease file: {line:?}");

        // 2. Renewal at T1: dnsmasq's expiry moves forward, the address stays.
        let first = line.expiry;
        let took = wait_until_or_explain(
            Duration::from_secs(3 * T1_SECS + 5),
            "dnsmasq's lease expiry moves (a renewal)",
            || bed.lease_for(&mac).is_some_and(|l| l.expiry > first),
            || explain(&bed),
        );
        let renewed = bed.lease_for(&mac).unwrap();
        eprintln!(
            "renewed after {took:.1?}: expiry {first} -> {} (+{} s)",
            renewed.expiry,
            renewed.expiry - first
        );
        assert_eq!(renewed.ip, ip);
        assert_eq!(bed.addresses_on(MACVLAN), vec![format!("{ip}/32")]);
        // 3. Restart with the same MAC and the address as requestedIP: the macvlan goes (Keep,
        // no RELEASE) and the next client gets the same address by INIT-REBOOT.
        vip.stop(Stop::Keep).await.expect("stop");
        assert!(!bed.link_exists(MACVLAN), "the macvlan is deleted");
        assert!(bed.lease_for(&mac).is_some(), "Keep does not release");
        (lease.address, first)
    });
    let discovers = bed.log_lines("DHCPDISCOVER").len();
    eprintln!("first lease file expiry {first_expiry}");

    in_netns(&lan, async {
        let vip = DhcpVip::start(spec(Some(address)), 2)
            .await
            .expect("restart");
        let lease = wait_for_lease(&vip).await;
        assert_eq!(
            lease.address, address,
            "same MAC + requestedIP: same address"
        );
        assert_eq!(
            bed.log_lines("DHCPDISCOVER").len(),
            discovers,
            "INIT-REBOOT needs no DISCOVER\n{}",
            explain(&bed)
        );

        // 4. The server vanishes: RENEW (T1) and REBIND (T2 = 10 s) go unanswered, the address
        // stays until the lease (2 min) ends.
        bed.dnsmasq.stop();
        holds_for(
            Duration::from_secs(12),
            "the address stays on the macvlan while the server is gone",
            || bed.addresses_on(MACVLAN) == vec![format!("{address}/32")],
            || explain(&bed),
        );

        // 5. Release: dnsmasq (back, same lease file) drops the lease; the macvlan is gone.
        bed.start_dnsmasq();
        assert!(bed.lease_for(&mac).is_some());
        vip.stop(Stop::Release).await.expect("release");
        assert!(!bed.link_exists(MACVLAN), "the macvlan is deleted");
        let took = wait_until_or_explain(
            Duration::from_secs(5),
            "dnsmasq drops the released lease from its file",
            || bed.lease_for(&mac).is_none(),
            || explain(&bed),
        );
        eprintln!("released; gone from the lease file after {took:.1?}");
        assert!(
            bed.log_lines(&format!("DHCPRELEASE(lan0) {address} {mac}"))
                .len()
                == 1,
            "{}",
            explain(&bed)
        );
    });
    eprintln!(
        "dnsmasq DHCP lines:\n{}",
        bed.log_lines("DHCP")
            .into_iter()
            .filter(|l| l.contains("(lan0)"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A macvlan name already taken by an interface vipd did not make (a `kube-vip.io/macvlanName`
/// naming the uplink, or another tool's macvlan): refused with an error naming it, the
/// interface untouched.
#[test]
fn a_macvlan_name_taken_by_another_interface_is_refused_and_left_alone() {
    skip_unless!(root, NEEDS, VIPD_NEEDS);
    let bed = DhcpBed::setup("2m", &[]);
    let lan = bed.lan.clone();
    run_ok(
        "ip",
        &[
            "-n", &lan, "link", "add", "uplink1", "type", "veth", "peer", "name", "uplink1p",
        ],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &lan,
            "link",
            "add",
            "mv-tenant",
            "link",
            PARENT,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &lan,
            "link",
            "set",
            "mv-tenant",
            "alias",
            "tenant vlan 7",
        ],
    );
    in_netns(&lan, async {
        for taken in [PARENT, "uplink1", "mv-tenant"] {
            let mut s = spec(None);
            s.ifname = taken.into();
            let err = DhcpVip::start(s, 1).await.err().expect("refused");
            assert!(
                err.to_string()
                    .contains(&format!("interface {taken:?} exists and is not a macvlan")),
                "{err}"
            );
            assert!(bed.link_exists(taken), "{taken} is still there");
        }
    });
}
