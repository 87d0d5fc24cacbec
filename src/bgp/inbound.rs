//! [pure] What a peer sends us, checked as RFC 4271 §6 and RFC 7606 ask: the message header
//! (type and per-type length), the OPEN with its capabilities, the UPDATE attribute by
//! attribute, NOTIFICATION and ROUTE-REFRESH.
//!
//! Written by hand rather than with `netgauze-bgp-pkt` (which still encodes what we send):
//! RFC 7606 needs the decoder to keep going past a malformed attribute and say *which* action
//! applies (treat-as-withdraw, attribute discard, session reset), and a general decoder either
//! fails the whole message or accepts what must be refused. vipd takes no routes, so an UPDATE
//! is read only far enough to validate it and list its prefixes.

use crate::bgp::notification::{code, Notification};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A message the peer sent that must end the session: the NOTIFICATION we answer with and what
/// the operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub notification: Notification,
    pub description: String,
}

fn reject(code: u8, subcode: u8, data: impl Into<Vec<u8>>, why: String) -> Rejected {
    Rejected {
        notification: Notification::new(code, subcode, data),
        description: why,
    }
}

/// RFC 4271 §4.1 message types (and RFC 2918's ROUTE-REFRESH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    Update,
    Notification,
    KeepAlive,
    RouteRefresh,
}

/// One framed message whose header passed the checks of RFC 4271 §6.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: Kind,
    /// The bytes after the 19-byte header.
    pub body: &'a [u8],
    /// The whole message, for NOTIFICATIONs that must quote it.
    pub whole: &'a [u8],
}

/// Checks the type and the per-type length of one whole frame (marker and overall length were
/// checked by the framer): an unknown type is 1/3 with the type, a length below the type's
/// minimum 1/2 with the length. A short NOTIFICATION is let through: it is never answered.
pub fn message(frame: &[u8]) -> Result<Message<'_>, Rejected> {
    let len = frame.len();
    let kind = match frame[18] {
        1 => Kind::Open,
        2 => Kind::Update,
        3 => Kind::Notification,
        4 => Kind::KeepAlive,
        5 => Kind::RouteRefresh,
        t => {
            return Err(reject(
                code::MESSAGE_HEADER,
                3,
                [t],
                format!("message type {t} is not a BGP message type vipd knows"),
            ))
        }
    };
    let min = match kind {
        Kind::Open => 29,
        Kind::Update => 23,
        Kind::KeepAlive => 19,
        Kind::Notification | Kind::RouteRefresh => 19,
    };
    if len < min || (kind == Kind::KeepAlive && len != 19) {
        return Err(reject(
            code::MESSAGE_HEADER,
            2,
            (len as u16).to_be_bytes(),
            format!("{kind:?} message of length {len} (the least is {min})"),
        ));
    }
    Ok(Message {
        kind,
        body: &frame[19..],
        whole: frame,
    })
}

// ---------------------------------------------------------------------------------------------
// OPEN

/// The peer's OPEN as far as vipd uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOpen {
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub caps: Capabilities,
}

/// What the peer's capabilities say (RFC 5492).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// (AFI, SAFI) of every Multiprotocol Extensions capability (RFC 4760).
    pub multiprotocol: Vec<(u16, u8)>,
    /// The 4-octet AS capability's AS (RFC 6793).
    pub as4: Option<u32>,
    /// Route refresh in any of its forms (RFC 2918 code 2, Cisco's 128, enhanced 70).
    pub route_refresh: bool,
    /// Graceful Restart (RFC 4724 §3): the peer keeps our routes as stale while we restart.
    pub graceful_restart: Option<PeerGracefulRestart>,
    /// Long-lived Graceful Restart (RFC 9494), in any well-formed length.
    pub long_lived_graceful_restart: bool,
}

/// The peer's Graceful Restart capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    /// The R bit: the peer has restarted.
    pub restarting: bool,
    /// The N bit (RFC 8538): a NOTIFICATION other than Hard Reset keeps the routes too.
    pub notification: bool,
    /// Seconds (12 bits).
    pub restart_time: u16,
    /// (AFI, SAFI, forwarding state preserved) per family.
    pub families: Vec<(u16, u8, bool)>,
}

impl PeerGracefulRestart {
    /// The capability's value (RFC 4724 §3); `None` when its length is not 2 + 4n. A malformed
    /// Graceful Restart capability costs the peer graceful restart, not the session.
    pub fn parse(value: &[u8]) -> Option<PeerGracefulRestart> {
        let [flags_time_hi, time_lo, tuples @ ..] = value else {
            return None;
        };
        if tuples.len() % 4 != 0 {
            return None;
        }
        Some(PeerGracefulRestart {
            restarting: flags_time_hi & 0x80 != 0,
            notification: flags_time_hi & 0x40 != 0,
            restart_time: u16::from_be_bytes([flags_time_hi & 0x0f, *time_lo]),
            families: tuples
                .chunks_exact(4)
                .map(|t| (u16::from_be_bytes([t[0], t[1]]), t[2], t[3] & 0x80 != 0))
                .collect(),
        })
    }
}

impl PeerOpen {
    /// The peer's AS: the 4-octet capability's when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.caps.as4.unwrap_or(u32::from(self.my_as))
    }
}

/// RFC 4271 §6.2: a recognised optional parameter or capability that is malformed is OPEN
/// Message Error / Unspecific (2/0).
fn malformed_open(why: String) -> Rejected {
    reject(code::OPEN, 0, [], why)
}

/// Decodes the OPEN body: version (2/1 when not 4), optional parameters (RFC 9072's extended
/// length form too), capabilities with their lengths checked. Semantic checks (AS, hold time,
/// identifier) are [`crate::bgp::open::negotiate`]'s.
pub fn open(body: &[u8]) -> Result<PeerOpen, Rejected> {
    let version = body[0];
    if version != 4 {
        return Err(reject(
            code::OPEN,
            1,
            4u16.to_be_bytes(),
            format!("peer speaks BGP version {version}, we speak 4"),
        ));
    }
    let my_as = u16::from_be_bytes([body[1], body[2]]);
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    let bgp_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    let opt_len = usize::from(body[9]);
    let rest = &body[10..];
    // RFC 9072: Non-Ext OP Len 255 and Non-Ext OP Type 255 mean 2-octet lengths follow.
    let (params, wide) = if opt_len == 255 && rest.first() == Some(&255) {
        let Some(len) = rest.get(1..3) else {
            return Err(malformed_open(
                "extended optional parameters length missing".into(),
            ));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        (rest.get(3..).unwrap_or_default(), Some(len))
    } else {
        (rest, None)
    };
    let declared = wide.unwrap_or(opt_len);
    if params.len() != declared {
        return Err(malformed_open(format!(
            "optional parameters length {declared} but {} octets follow",
            params.len()
        )));
    }
    let mut caps = Capabilities::default();
    let mut pos = 0;
    while pos < params.len() {
        let head = if wide.is_some() { 3 } else { 2 };
        let Some(h) = params.get(pos..pos + head) else {
            return Err(malformed_open(format!(
                "optional parameter header cut off at octet {pos}"
            )));
        };
        let (ptype, plen) = match wide {
            Some(_) => (h[0], usize::from(u16::from_be_bytes([h[1], h[2]]))),
            None => (h[0], usize::from(h[1])),
        };
        let Some(value) = params.get(pos + head..pos + head + plen) else {
            return Err(malformed_open(format!(
                "optional parameter {ptype} of length {plen} runs past the OPEN"
            )));
        };
        pos += head + plen;
        if ptype != 2 {
            return Err(reject(
                code::OPEN,
                4,
                [],
                format!(
                    "optional parameter type {ptype} is not supported (only capabilities, type 2)"
                ),
            ));
        }
        capabilities(value, &mut caps)?;
    }
    Ok(PeerOpen {
        my_as,
        hold_time,
        bgp_id,
        caps,
    })
}

fn capabilities(mut value: &[u8], caps: &mut Capabilities) -> Result<(), Rejected> {
    while !value.is_empty() {
        let [ccode, clen, rest @ ..] = value else {
            return Err(malformed_open(format!(
                "capability cut off: {} octet left in its parameter",
                value.len()
            )));
        };
        let clen = usize::from(*clen);
        let Some(cval) = rest.get(..clen) else {
            return Err(malformed_open(format!(
                "capability {ccode} of length {clen} runs past its parameter ({} octets left)",
                rest.len()
            )));
        };
        let exact = |want: usize, name: &str| -> Result<(), Rejected> {
            if clen == want {
                Ok(())
            } else {
                Err(malformed_open(format!(
                    "{name} capability of length {clen} (it is {want} octets)"
                )))
            }
        };
        match ccode {
            1 => {
                exact(4, "Multiprotocol Extensions")?;
                caps.multiprotocol
                    .push((u16::from_be_bytes([cval[0], cval[1]]), cval[3]));
            }
            2 | 128 => {
                exact(0, "Route Refresh")?;
                caps.route_refresh = true;
            }
            70 => {
                exact(0, "Enhanced Route Refresh")?;
                caps.route_refresh = true;
            }
            65 => {
                exact(4, "4-octet AS")?;
                caps.as4 = Some(u32::from_be_bytes([cval[0], cval[1], cval[2], cval[3]]));
            }
            64 => caps.graceful_restart = PeerGracefulRestart::parse(cval),
            71 => caps.long_lived_graceful_restart = clen > 0 && clen % 7 == 0,
            // Add-path, FQDN, …: offered to us, not used; RFC 5492 §3 says ignore capabilities
            // we do not take up.
            _ => {}
        }
        value = &rest[clen..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// UPDATE (RFC 4271 §6.3 as revised by RFC 7606)

/// What the session knows when it reads an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRules {
    /// Both sides sent the 4-octet AS capability: AS numbers in AS_PATH and AGGREGATOR are 4
    /// octets, and AS4_PATH / AS4_AGGREGATOR must not appear.
    pub asn4: bool,
    pub ebgp: bool,
}

/// RFC 7606's approaches short of a session reset, weakest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing wrong (or only attributes to discard, listed in [`Update::discarded`]).
    Accept,
    /// The UPDATE's announcements are taken as withdrawals (RFC 7606 §2); the reason.
    TreatAsWithdraw(String),
}

/// A received UPDATE that does not reset the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Prefixes announced; empty under treat-as-withdraw (they are in `withdrawn`).
    pub announced: Vec<IpNet>,
    pub withdrawn: Vec<IpNet>,
    pub action: Action,
    /// Attributes dropped by "attribute discard" (RFC 7606 §2), each with why.
    pub discarded: Vec<String>,
    /// MP_REACH/MP_UNREACH of families vipd does not speak, ignored (not an error).
    pub ignored: Vec<String>,
}

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const MP_REACH: u8 = 14;
const MP_UNREACH: u8 = 15;

/// How a malformed attribute of a type is handled (RFC 7606 §7), short of a session reset
/// (kept for MP_REACH_NLRI / MP_UNREACH_NLRI, which carry the NLRI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Discard,
    Withdraw,
}

/// RFC 4271/4760/6793/8092 attribute types: name, whether optional, whether transitive.
fn known(t: u8) -> Option<(&'static str, bool, bool)> {
    Some(match t {
        1 => ("ORIGIN", false, true),
        2 => ("AS_PATH", false, true),
        3 => ("NEXT_HOP", false, true),
        4 => ("MULTI_EXIT_DISC", true, false),
        5 => ("LOCAL_PREF", false, true),
        6 => ("ATOMIC_AGGREGATE", false, true),
        7 => ("AGGREGATOR", true, true),
        8 => ("COMMUNITIES", true, true),
        9 => ("ORIGINATOR_ID", true, false),
        10 => ("CLUSTER_LIST", true, false),
        14 => ("MP_REACH_NLRI", true, false),
        15 => ("MP_UNREACH_NLRI", true, false),
        16 => ("EXTENDED_COMMUNITIES", true, true),
        17 => ("AS4_PATH", true, true),
        18 => ("AS4_AGGREGATOR", true, true),
        32 => ("LARGE_COMMUNITY", true, true),
        _ => return None,
    })
}

/// Accumulates RFC 7606 §3(f): the strongest approach wins.
#[derive(Default)]
struct Verdict {
    withdraw: Option<String>,
    discarded: Vec<String>,
    ignored: Vec<String>,
}

impl Verdict {
    fn apply(&mut self, severity: Severity, why: String) {
        match severity {
            Severity::Discard => self.discarded.push(why),
            Severity::Withdraw => {
                self.withdraw.get_or_insert(why);
            }
        }
    }
}

/// Reads an UPDATE body. `Err` is a session reset with its NOTIFICATION (RFC 7606 keeps that for
/// what makes the rest of the message unreadable: the field lengths, the NLRI, MP_REACH/
/// MP_UNREACH, an unrecognised well-known attribute, a repeated MP attribute).
pub fn update(body: &[u8], rules: UpdateRules) -> Result<Update, Rejected> {
    let malformed_list = |why: String| reject(code::UPDATE, 1, [], why);
    let total = body.len();
    let wrl = usize::from(u16::from_be_bytes([body[0], body[1]]));
    if 2 + wrl + 2 > total {
        return Err(malformed_list(format!(
            "withdrawn routes length {wrl} runs past the UPDATE ({total} octets after the header)"
        )));
    }
    let withdrawn_field = &body[2..2 + wrl];
    let tpal = usize::from(u16::from_be_bytes([body[2 + wrl], body[3 + wrl]]));
    if 4 + wrl + tpal > total {
        return Err(malformed_list(format!(
            "total path attribute length {tpal} runs past the UPDATE (withdrawn routes {wrl}, {total} octets after the header)"
        )));
    }
    let attrs = &body[4 + wrl..4 + wrl + tpal];
    let nlri_field = &body[4 + wrl + tpal..];
    let invalid_network =
        |what: &str, e: String| reject(code::UPDATE, 10, [], format!("{what}: {e}"));
    let mut withdrawn =
        prefixes(withdrawn_field, Afi::V4).map_err(|e| invalid_network("withdrawn routes", e))?;
    let mut announced = prefixes(nlri_field, Afi::V4).map_err(|e| invalid_network("NLRI", e))?;

    let mut verdict = Verdict::default();
    let mut seen = [false; 256];
    let mut has_mp_reach = false;
    let mut pos = 0;
    while pos < attrs.len() {
        let left = attrs.len() - pos;
        let extended = attrs[pos] & 0x10 != 0;
        let head = if extended { 4 } else { 3 };
        // RFC 7606 §4: too few octets for an attribute header, or a length past the list, is
        // treat-as-withdraw; the total attribute length still locates the NLRI.
        if left < head {
            verdict.withdraw.get_or_insert(format!(
                "{left} octet(s) left at the end of the path attributes, too few for an attribute"
            ));
            break;
        }
        let (flags, t) = (attrs[pos], attrs[pos + 1]);
        let len = if extended {
            usize::from(u16::from_be_bytes([attrs[pos + 2], attrs[pos + 3]]))
        } else {
            usize::from(attrs[pos + 2])
        };
        if pos + head + len > attrs.len() {
            verdict.withdraw.get_or_insert(format!(
                "attribute type {t} of length {len} runs past the path attributes ({} octets left)",
                left - head
            ));
            break;
        }
        let whole = &attrs[pos..pos + head + len];
        let value = &whole[head..];
        pos += head + len;

        let Some((name, optional, transitive)) = known(t) else {
            if flags & 0x80 == 0 {
                return Err(reject(
                    code::UPDATE,
                    2,
                    whole,
                    format!("attribute type {t} is marked well-known but vipd does not know it"),
                ));
            }
            continue; // An unknown optional attribute: nothing to check, nothing we use.
        };
        if std::mem::replace(&mut seen[usize::from(t)], true) {
            if matches!(t, MP_REACH | MP_UNREACH) {
                return Err(malformed_list(format!("{name} appears more than once")));
            }
            verdict
                .discarded
                .push(format!("{name} repeated: later copies discarded"));
            continue;
        }
        let flags_ok = (flags & 0x80 != 0) == optional && (flags & 0x40 != 0) == transitive;
        match t {
            MP_REACH | MP_UNREACH if !flags_ok => {
                return Err(reject(
                    code::UPDATE,
                    4,
                    whole,
                    format!("{name} with flags {flags:#04x} (it is optional, non-transitive)"),
                ))
            }
            MP_REACH => {
                has_mp_reach = true;
                mp_reach(value, &mut announced, &mut verdict).map_err(|why| {
                    reject(code::UPDATE, 9, whole, format!("MP_REACH_NLRI {why}"))
                })?;
            }
            MP_UNREACH => {
                mp_unreach(value, &mut withdrawn, &mut verdict).map_err(|why| {
                    reject(code::UPDATE, 9, whole, format!("MP_UNREACH_NLRI {why}"))
                })?;
            }
            // RFC 7606 §3(c): wrong optional/transitive bits make the attribute malformed.
            _ if !flags_ok => verdict.apply(
                malformed_severity(t, rules),
                format!("{name} with flags {flags:#04x}: optional/transitive bits wrong"),
            ),
            _ => {
                if let Some((severity, why)) = attribute_problem(t, value, rules) {
                    verdict.apply(severity, format!("{name} {why}"));
                }
            }
        }
    }

    // RFC 7606 §3(d): a missing well-known mandatory attribute is treat-as-withdraw; they are
    // mandatory only when something is announced (an MP_UNREACH alone needs none).
    if !announced.is_empty() || has_mp_reach {
        let mut missing: Vec<&str> = Vec::new();
        for (t, name) in [(ORIGIN, "ORIGIN"), (AS_PATH, "AS_PATH")] {
            if !seen[usize::from(t)] {
                missing.push(name);
            }
        }
        if !nlri_field.is_empty() && !seen[usize::from(NEXT_HOP)] {
            missing.push("NEXT_HOP");
        }
        if !missing.is_empty() {
            verdict.withdraw.get_or_insert(format!(
                "missing well-known attribute(s) {}",
                missing.join(", ")
            ));
        }
    }

    let action = match verdict.withdraw {
        Some(why) => {
            withdrawn.append(&mut announced);
            Action::TreatAsWithdraw(why)
        }
        None => Action::Accept,
    };
    Ok(Update {
        announced,
        withdrawn,
        action,
        discarded: verdict.discarded,
        ignored: verdict.ignored,
    })
}

/// RFC 7606 §7 per attribute (and RFC 6793 §6, RFC 8092 §6 for AS4_* and LARGE_COMMUNITY).
fn malformed_severity(t: u8, rules: UpdateRules) -> Severity {
    match t {
        6 | 7 | 17 | 18 => Severity::Discard,
        // Not expected from an external peer at all: dropped whatever their shape.
        5 | 9 | 10 if rules.ebgp => Severity::Discard,
        _ => Severity::Withdraw,
    }
}

/// The problem with a well-flagged attribute's value, if any, with the approach that applies.
fn attribute_problem(t: u8, v: &[u8], rules: UpdateRules) -> Option<(Severity, String)> {
    let len = v.len();
    let as_size = if rules.asn4 { 4 } else { 2 };
    let why = match t {
        1 if len != 1 => format!("of length {len} (it is 1)"),
        1 if v[0] > 2 => format!("value {} is not IGP, EGP or INCOMPLETE", v[0]),
        2 => as_path(v, as_size).err()?,
        3 if len != 4 => format!("of length {len} (it is 4)"),
        4 if len != 4 => format!("of length {len} (it is 4)"),
        5 if rules.ebgp => "from an external peer".to_owned(),
        5 if len != 4 => format!("of length {len} (it is 4)"),
        6 if len != 0 => format!("of length {len} (it is 0)"),
        7 if len != 4 + as_size => format!("of length {len} (it is {})", 4 + as_size),
        8 if len == 0 || !len.is_multiple_of(4) => {
            format!("of length {len} (a non-zero multiple of 4)")
        }
        9 | 10 if rules.ebgp => "from an external peer".to_owned(),
        9 if len != 4 => format!("of length {len} (it is 4)"),
        10 if len == 0 || !len.is_multiple_of(4) => {
            format!("of length {len} (a non-zero multiple of 4)")
        }
        16 if len == 0 || !len.is_multiple_of(8) => {
            format!("of length {len} (a non-zero multiple of 8)")
        }
        17 | 18 if rules.asn4 => "from a 4-octet AS speaker (RFC 6793 §6)".to_owned(),
        17 => as_path(v, 4).err()?,
        18 if len != 8 => format!("of length {len} (it is 8)"),
        32 if len == 0 || !len.is_multiple_of(12) => {
            format!("of length {len} (a non-zero multiple of 12)")
        }
        _ => return None,
    };
    // Out-of-place LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from an external peer are
    // dropped whatever their shape (RFC 4271 §5.1.5, RFC 7606 §7.5, §7.9, §7.10).
    Some((malformed_severity(t, rules), why))
}

/// RFC 7606 §7.2: segments of a known type, non-empty, each fitting the attribute.
fn as_path(mut v: &[u8], as_size: usize) -> Result<(), String> {
    while !v.is_empty() {
        let [stype, count, rest @ ..] = v else {
            return Err("ends in the middle of a segment header".to_owned());
        };
        if !(1..=4).contains(stype) {
            return Err(format!("has a segment of unknown type {stype}"));
        }
        if *count == 0 {
            return Err("has an empty segment".to_owned());
        }
        let need = usize::from(*count) * as_size;
        if rest.len() < need {
            return Err(format!(
                "segment of {count} AS numbers needs {need} octets, {} left",
                rest.len()
            ));
        }
        v = &rest[need..];
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Afi {
    V4,
    V6,
}

/// IPv4 and IPv6 unicast; `None` for families vipd does not speak.
fn family(afi: u16, safi: u8) -> Option<Afi> {
    match (afi, safi) {
        (1, 1) => Some(Afi::V4),
        (2, 1) => Some(Afi::V6),
        _ => None,
    }
}

/// RFC 7606 §7.11 / RFC 4760: the next-hop length must fit and suit the family, the NLRI must
/// parse; otherwise the session resets (3/9). Families we do not speak are ignored.
fn mp_reach(v: &[u8], announced: &mut Vec<IpNet>, verdict: &mut Verdict) -> Result<(), String> {
    let [a0, a1, safi, nhl, rest @ ..] = v else {
        return Err(format!("of length {} (at least 5)", v.len()));
    };
    let (afi, nhl) = (u16::from_be_bytes([*a0, *a1]), usize::from(*nhl));
    // Next hop, then one reserved octet, then NLRI.
    if rest.len() < nhl + 1 {
        return Err(format!(
            "next-hop length {nhl} runs past the attribute ({} octets left)",
            rest.len()
        ));
    }
    let Some(fam) = family(afi, *safi) else {
        verdict
            .ignored
            .push(format!("MP_REACH_NLRI of AFI {afi} SAFI {safi}"));
        return Ok(());
    };
    // IPv6: global, or global and link-local. IPv4: 4, or IPv6 next hops (RFC 8950).
    let nh_ok = match fam {
        Afi::V4 => matches!(nhl, 4 | 16 | 32),
        Afi::V6 => matches!(nhl, 16 | 32),
    };
    if !nh_ok {
        return Err(format!("next-hop length {nhl} does not fit AFI {afi}"));
    }
    announced.extend(prefixes(&rest[nhl + 1..], fam)?);
    Ok(())
}

fn mp_unreach(v: &[u8], withdrawn: &mut Vec<IpNet>, verdict: &mut Verdict) -> Result<(), String> {
    let [a0, a1, safi, rest @ ..] = v else {
        return Err(format!("of length {} (at least 3)", v.len()));
    };
    let afi = u16::from_be_bytes([*a0, *a1]);
    match family(afi, *safi) {
        Some(fam) => withdrawn.extend(prefixes(rest, fam)?),
        None => verdict
            .ignored
            .push(format!("MP_UNREACH_NLRI of AFI {afi} SAFI {safi}")),
    }
    Ok(())
}

/// RFC 4271 §4.3 prefixes: a length octet, then as many octets as the length needs.
fn prefixes(mut v: &[u8], afi: Afi) -> Result<Vec<IpNet>, String> {
    let max = match afi {
        Afi::V4 => 32,
        Afi::V6 => 128,
    };
    let mut out = Vec::new();
    while let [bits, rest @ ..] = v {
        if *bits > max {
            return Err(format!("prefix length {bits} exceeds {max}"));
        }
        let n = usize::from(*bits).div_ceil(8);
        let Some(octets) = rest.get(..n) else {
            return Err(format!(
                "a /{bits} prefix needs {n} octets, {} left",
                rest.len()
            ));
        };
        let net = match afi {
            Afi::V4 => {
                let mut a = [0u8; 4];
                a[..n].copy_from_slice(octets);
                Ipv4Net::new(Ipv4Addr::from(a), *bits).map(|n| IpNet::V4(n.trunc()))
            }
            Afi::V6 => {
                let mut a = [0u8; 16];
                a[..n].copy_from_slice(octets);
                Ipv6Net::new(Ipv6Addr::from(a), *bits).map(|n| IpNet::V6(n.trunc()))
            }
        };
        out.push(net.map_err(|e| e.to_string())?);
        v = &rest[n..];
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// ROUTE-REFRESH

/// A ROUTE-REFRESH (RFC 2918) or its BoRR/EoRR forms (RFC 7313).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

/// RFC 7313 §5: a body that is not 4 octets is 7/1 quoting the whole message. Subtypes and
/// families vipd does not know are the caller's to ignore.
pub fn route_refresh(msg: Message<'_>) -> Result<RouteRefresh, Rejected> {
    match msg.body {
        [a0, a1, subtype, safi] => Ok(RouteRefresh {
            afi: u16::from_be_bytes([*a0, *a1]),
            subtype: *subtype,
            safi: *safi,
        }),
        body => Err(reject(
            code::ROUTE_REFRESH,
            1,
            msg.whole,
            format!(
                "ROUTE-REFRESH of {} octets after the header (it is 4)",
                body.len()
            ),
        )),
    }
}

impl RouteRefresh {
    /// The family to re-send, when this is a plain refresh request for one we speak.
    pub fn requested(&self) -> Option<crate::bgp::types::Family> {
        use crate::bgp::types::Family;
        match (self.subtype, family(self.afi, self.safi)) {
            (0, Some(Afi::V4)) => Some(Family::Ipv4),
            (0, Some(Afi::V6)) => Some(Family::Ipv6),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
