//! [pure] kube-vip's `bgp_peers` syntax: `addr:AS:password:multihop:port:mpbgp:bfd`, comma
//! separated, IPv6 in brackets, trailing fields optional, empty entries skipped.
//!
//! Every error names the entry (by its 1-based position), the field and the value, and never
//! echoes a password.

use crate::peer::{BfdSpec, MpBgpNextHop, MpBgpSpec, Password, PeerAddress, PeerSpec};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why one entry of `bgp_peers` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bgp_peers entry {entry} ({shown:?}): {field} {problem}")]
pub struct PeerParseError {
    /// 1-based position in the comma list.
    pub entry: usize,
    /// The entry with any password replaced by `*****`.
    pub shown: String,
    pub field: &'static str,
    pub problem: String,
}

/// Parses the whole `bgp_peers` value. An empty value is an empty list.
pub fn parse_bgp_peers(value: &str) -> Result<Vec<PeerSpec>, PeerParseError> {
    value
        .split(',')
        .enumerate()
        .filter(|(_, entry)| !entry.trim().is_empty())
        .map(|(i, entry)| parse_entry(i + 1, entry.trim()))
        .collect()
}

fn parse_entry(entry: usize, text: &str) -> Result<PeerSpec, PeerParseError> {
    let (address, rest) = split_address(text).map_err(|problem| PeerParseError {
        entry,
        shown: redact(text),
        field: "address",
        problem,
    })?;
    let fields: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(':').collect()
    };
    let err = |field: &'static str, problem: String| PeerParseError {
        entry,
        shown: redact(text),
        field,
        problem,
    };
    if let PeerAddress::Ip(ip) = &address {
        let unicast = match ip {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        };
        if !unicast {
            return Err(err(
                "address",
                format!("{ip} is not a unicast address: no BGP peer can have it"),
            ));
        }
    }
    let unnumbered = matches!(address, PeerAddress::Unnumbered(_));
    let remote_as = match fields.first() {
        Some(asn) if !asn.is_empty() => asn
            .parse::<u32>()
            .map_err(|_| err("AS", format!("{asn:?} is not an AS number (0..4294967295)")))?,
        // An unnumbered peer may leave the AS out: it is learned from the peer's OPEN.
        _ if unnumbered => 0,
        _ => return Err(err("AS", "is missing (the form is addr:AS[:…])".into())),
    };
    if remote_as == 0 && !unnumbered {
        return Err(err("AS", "0 is not a valid peer AS".into()));
    }
    let password = match fields.get(1) {
        Some(pw) if !pw.is_empty() => {
            if pw.len() > 80 {
                return Err(err(
                    "password",
                    format!("is {} bytes long; TCP-MD5 keys hold at most 80", pw.len()),
                ));
            }
            Some(Password::new((*pw).to_owned()))
        }
        _ => None,
    };
    let multihop = match fields.get(2) {
        Some(v) if !v.is_empty() => parse_bool(v)
            .ok_or_else(|| err("multihop", format!("{v:?} is not a boolean (true/false)")))?,
        _ => false,
    };
    let port = match fields.get(3) {
        Some(v) if !v.is_empty() => match v.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(err("port", format!("{v:?} is not a TCP port (1..65535)"))),
        },
        _ => 179,
    };
    let mpbgp = match fields.get(4) {
        Some(v) if !v.is_empty() => parse_mpbgp(v).map_err(|p| err("mpbgp", p))?,
        _ => MpBgpSpec::default(),
    };
    let bfd = match fields.get(5) {
        Some(v) if !v.is_empty() => Some(parse_bfd(v).map_err(|p| err("bfd", p))?),
        _ => None,
    };
    if fields.len() > 6 {
        return Err(err(
            "entry",
            format!(
                "has {} fields after the address; at most 6 (AS:password:multihop:port:mpbgp:bfd)",
                fields.len()
            ),
        ));
    }
    Ok(PeerSpec {
        address,
        port,
        remote_as,
        local_as: None,
        password,
        multihop,
        source: None,
        router_id: None,
        mpbgp,
        bfd,
    })
}

/// Splits `addr` from the `:`-separated rest. IPv6 must be bracketed, since its colons would
/// otherwise be fields.
fn split_address(text: &str) -> Result<(PeerAddress, &str), String> {
    if let Some(after) = text.strip_prefix("unnumbered:") {
        let (ifname, rest) = after.split_once(':').unwrap_or((after, ""));
        if ifname.is_empty() {
            return Err("unnumbered: needs an interface name".into());
        }
        return Ok((PeerAddress::Unnumbered(ifname.to_owned()), rest));
    }
    if let Some(after) = text.strip_prefix('[') {
        let (inside, rest) = after
            .split_once(']')
            // The entry is not echoed: what follows may be the password.
            .ok_or_else(|| "the address opens '[' but never closes it".to_owned())?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
        let rest = match rest.strip_prefix(':') {
            Some(r) => r,
            None if rest.is_empty() => "",
            // Not echoed either: what follows the address may hold the password.
            None => {
                return Err(format!(
                    "[{inside}] must be followed by ':' and the AS number ({} characters after ']' instead)",
                    rest.chars().count()
                ))
            }
        };
        return Ok((PeerAddress::Ip(IpAddr::V6(ip)), rest));
    }
    let (addr, rest) = text.split_once(':').unwrap_or((text, ""));
    let ip: Ipv4Addr = addr.parse().map_err(|_| match unbracketed_ipv6(text) {
        // Only the address is named: the fields after it may hold the password.
        Some(v6) => format!("{v6} is an IPv6 address: write it in brackets, [{v6}]:AS"),
        None if text.matches(':').count() > 6 => {
            format!("{addr:?} looks like part of an unbracketed IPv6 address; write [addr]:AS")
        }
        None => format!("{addr:?} is not an IPv4 address"),
    })?;
    Ok((PeerAddress::Ip(IpAddr::V4(ip)), rest))
}

/// The shortest run of `:`-separated fields at the start of `text` that reads as an IPv6
/// address, if any (`fd00::2:65001` → `fd00::2`).
fn unbracketed_ipv6(text: &str) -> Option<Ipv6Addr> {
    let parts: Vec<&str> = text.split(':').collect();
    (2..=parts.len()).find_map(|n| parts[..n].join(":").parse().ok())
}

/// Go's `strconv.ParseBool`, which kube-vip uses.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_mpbgp(v: &str) -> Result<MpBgpSpec, String> {
    let mut spec = MpBgpSpec::default();
    for pair in v.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        match key {
            "mpbgp_nexthop" => spec.next_hop = parse_mpbgp_nexthop(value)?,
            "mpbgp_ipv4" if value.is_empty() => spec.ipv4 = None,
            "mpbgp_ipv4" => {
                spec.ipv4 = Some(
                    value
                        .parse()
                        .map_err(|_| format!("mpbgp_ipv4 {value:?} is not an IPv4 address"))?,
                )
            }
            "mpbgp_ipv6" if value.is_empty() => spec.ipv6 = None,
            "mpbgp_ipv6" => {
                spec.ipv6 = Some(
                    value
                        .parse()
                        .map_err(|_| format!("mpbgp_ipv6 {value:?} is not an IPv6 address"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (known: mpbgp_nexthop, mpbgp_ipv4, mpbgp_ipv6)"
                ))
            }
        }
    }
    Ok(spec)
}

/// `mpbgp_nexthop` values, shared with the global setting of the same name.
pub fn parse_mpbgp_nexthop(value: &str) -> Result<MpBgpNextHop, String> {
    match value {
        "" => Ok(MpBgpNextHop::None),
        "fixed" => Ok(MpBgpNextHop::Fixed),
        "auto_sourceip" => Ok(MpBgpNextHop::AutoSourceIp),
        "auto_sourceif" => Ok(MpBgpNextHop::AutoSourceIf),
        other => Err(format!(
            "mpbgp_nexthop {other:?} is not one of fixed, auto_sourceip, auto_sourceif"
        )),
    }
}

/// The seventh field of a `bgp_peers` entry (and `vipd_bfd`): `enable;rxMs;txMs;multiplier`,
/// empty parts taking the defaults (300 ms × 3).
pub fn parse_bfd(v: &str) -> Result<BfdSpec, String> {
    let parts: Vec<&str> = v.split(';').collect();
    if parts.len() < 4 {
        return Err(format!(
            "{v:?} has {} fields; the form is enable;rxMs;txMs;multiplier",
            parts.len()
        ));
    }
    let default = BfdSpec::default();
    let enabled = match parts[0] {
        "" => default.enabled,
        s => parse_bool(s).ok_or_else(|| format!("enable {s:?} is not a boolean"))?,
    };
    let ms = |s: &str, d: u32, name: &str| -> Result<u32, String> {
        if s.is_empty() {
            return Ok(d);
        }
        match s.parse::<u32>() {
            // 0 is reserved for the transmit interval and asks the peer to send nothing for
            // the receive one (RFC 5880 §4.1): the session could never come up.
            Ok(0) => Err(format!("{name} 0: BFD needs at least 1 ms")),
            Ok(ms) => Ok(ms),
            Err(_) => Err(format!("{name} {s:?} is not a number of milliseconds")),
        }
    };
    let multiplier = match parts[3] {
        "" => default.multiplier,
        s => s
            .parse::<u8>()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| format!("multiplier {s:?} is not a number from 1 to 255"))?,
    };
    Ok(BfdSpec {
        enabled,
        rx_ms: ms(parts[1], default.rx_ms, "rxMs")?,
        tx_ms: ms(parts[2], default.tx_ms, "txMs")?,
        multiplier,
    })
}

/// The entry as it may be shown: the password field (third) masked.
fn redact(text: &str) -> String {
    // Where the address cannot be read, neither can where the password starts: show nothing
    // of the entry (the error names what is wrong with the address).
    let Ok((_, rest)) = split_address(text) else {
        return "(entry not shown: its address cannot be read, and it may hold a password)".into();
    };
    if rest.is_empty() {
        return text.to_owned();
    }
    let head = &text[..text.len() - rest.len() - 1];
    let mut fields: Vec<String> = rest.split(':').map(str::to_owned).collect();
    if let Some(pw) = fields.get_mut(1) {
        if !pw.is_empty() {
            *pw = "*****".into();
        }
    }
    format!("{head}:{}", fields.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    #[test]
    fn two_ipv4_peers_with_defaults_and_one_with_password_and_multihop() {
        let peers = parse_bgp_peers("10.0.0.1:65000::false,10.0.0.2:65000:pw:true").unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0], PeerSpec::new(v4("10.0.0.1"), 65000));
        let mut want = PeerSpec::new(v4("10.0.0.2"), 65000);
        want.password = Some(Password::new("pw".into()));
        want.multihop = true;
        assert_eq!(peers[1], want);
    }

    #[test]
    fn bracketed_ipv6_with_port() {
        let peers = parse_bgp_peers("[fd00::1]:65001:s3cret:true:1179").unwrap();
        assert_eq!(
            peers[0].address,
            PeerAddress::Ip("fd00::1".parse().unwrap())
        );
        assert_eq!(peers[0].port, 1179);
        assert_eq!(peers[0].remote_as, 65001);
        assert!(peers[0].multihop);
    }

    #[test]
    fn mpbgp_and_bfd_fields() {
        let peers =
            parse_bgp_peers("10.0.0.1:65000:pw:false:179:mpbgp_nexthop=auto_sourceif:true;300;;5")
                .unwrap();
        assert_eq!(peers[0].mpbgp.next_hop, MpBgpNextHop::AutoSourceIf);
        assert_eq!(
            peers[0].bfd,
            Some(BfdSpec {
                enabled: true,
                rx_ms: 300,
                tx_ms: 300,
                multiplier: 5
            })
        );
        // Every field between the AS and BFD left empty: port 179, BFD's defaults.
        let bare = parse_bgp_peers("10.99.0.2:65530:::::true;;;").unwrap();
        assert_eq!(bare[0].port, 179);
        assert_eq!(
            bare[0].bfd,
            Some(BfdSpec {
                enabled: true,
                ..BfdSpec::default()
            })
        );
        assert!(parse_bgp_peers("10.0.0.1:65000:::::true;0;300;3")
            .unwrap_err()
            .to_string()
            .contains("rxMs 0"));
        let fixed =
            parse_bgp_peers("[fd00::2]:65000::::mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.7").unwrap();
        assert_eq!(fixed[0].mpbgp.next_hop, MpBgpNextHop::Fixed);
        assert_eq!(fixed[0].mpbgp.ipv4, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn empty_entries_and_empty_value_are_skipped() {
        assert_eq!(parse_bgp_peers("").unwrap(), vec![]);
        assert_eq!(parse_bgp_peers(",10.0.0.1:1,,").unwrap().len(), 1);
    }

    #[test]
    fn unnumbered_peer_may_omit_the_as() {
        let peers = parse_bgp_peers("unnumbered:eth0,unnumbered:eth1:65000::true").unwrap();
        assert_eq!(peers[0].address, PeerAddress::Unnumbered("eth0".into()));
        assert_eq!(peers[0].remote_as, 0);
        assert_eq!(peers[1].remote_as, 65000);
        assert!(peers[1].multihop);
    }

    #[test]
    fn errors_name_entry_field_and_value_but_never_the_password() {
        let e = parse_bgp_peers("10.0.0.1:65000,10.0.0.2:6x:hunter2").unwrap_err();
        assert_eq!(e.entry, 2);
        assert_eq!(e.field, "AS");
        let text = e.to_string();
        assert!(text.contains("\"6x\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let e = parse_bgp_peers("10.0.0.1:65000:hunter2:maybe").unwrap_err();
        assert_eq!(e.field, "multihop");
        assert!(!e.to_string().contains("hunter2"));

        let e = parse_bgp_peers("10.0.0.1:65000:::99999").unwrap_err();
        assert_eq!(e.field, "port");
        assert!(e.to_string().contains("99999"));
    }

    #[test]
    fn malformed_addresses_are_explained() {
        let e = parse_bgp_peers("fd00::1:65000").unwrap_err();
        assert_eq!(e.field, "address");
        let e = parse_bgp_peers("fd00:0:0:0:0:0:0:1:65000").unwrap_err();
        assert!(
            e.problem
                .contains("fd00::1 is an IPv6 address: write it in brackets"),
            "{}",
            e.problem
        );
        // Neither the unclosed bracket nor the unbracketed address shows what follows it.
        let e = parse_bgp_peers("[fd00::1:65000:hunter2").unwrap_err();
        assert!(e.problem.contains("never closes"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse_bgp_peers("fd00::1:65000:hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // Found by the bgp_peers fuzz target: a missing ':' after ']' echoed the rest.
        let e = parse_bgp_peers("[fd00::1]65000:hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(
            e.problem.contains("[fd00::1] must be followed by ':'"),
            "{e}"
        );
        let e = parse_bgp_peers("10.0.0.300:65000").unwrap_err();
        assert!(e.problem.contains("10.0.0.300"));
        let e = parse_bgp_peers("10.0.0.1").unwrap_err();
        assert_eq!(e.field, "AS");
    }

    #[test]
    fn bad_mpbgp_and_bfd_are_rejected() {
        let e = parse_bgp_peers("10.0.0.1:1:::179:mpbgp_nexthop=magic").unwrap_err();
        assert_eq!(e.field, "mpbgp");
        let e = parse_bgp_peers("10.0.0.1:1:::179:colour=red").unwrap_err();
        assert!(e.problem.contains("unknown key"));
        let e = parse_bgp_peers("10.0.0.1:1:::179::true;300").unwrap_err();
        assert_eq!(e.field, "bfd");
    }

    #[test]
    fn password_longer_than_the_kernel_allows_is_rejected() {
        let long = "x".repeat(81);
        let e = parse_bgp_peers(&format!("10.0.0.1:1:{long}")).unwrap_err();
        assert_eq!(e.field, "password");
        assert!(!e.to_string().contains(&long));
    }

    #[test]
    fn debug_output_of_a_peer_hides_its_password() {
        let peers = parse_bgp_peers("10.0.0.1:1:hunter2").unwrap();
        assert!(!format!("{peers:?}").contains("hunter2"));
    }
}
