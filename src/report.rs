//! [pure] What `vipd status` shows and `/metrics` counts: the agent's peers and, per Service,
//! each VIP announced to which peers or the typed reason it is not.
//!
//! The owner loop publishes [`ServiceState`]s after each reconcile; the peers' state is read
//! live at request time; [`assemble`] joins the two, so a session that went down a second ago
//! shows as down even if nothing was re-decided since.

use crate::bgp::types::Family;
use crate::bgp::types::PeerStatus;
use crate::decide::{ServiceDecision, Skip};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The whole answer of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub node: String,
    pub version: String,
    /// `bgp` (services mode) or `bgp-static` (VIPs from flags/env).
    pub mode: String,
    /// What keeps `/readyz` from answering 200; empty when ready.
    pub not_ready: Vec<String>,
    pub peers: Vec<PeerReport>,
    pub services: Vec<ServiceReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// `address:port`.
    pub peer: String,
    /// RFC 4271 state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: String,
    pub uptime_seconds: Option<u64>,
    pub families: Vec<String>,
    pub last_error: Option<String>,
    pub prefixes_sent: usize,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub notifications_sent: u64,
    pub notifications_received: u64,
    pub flaps: u64,
    /// Seconds since the session was last Established (or since start); `None` while up.
    #[serde(default)]
    pub down_seconds: Option<u64>,
    /// Sessions and attempts ended, by reason (`connection_closed`, `peer_notification`, …).
    #[serde(default)]
    pub downs: BTreeMap<String, u64>,
    /// UPDATEs whose routes were taken as withdrawn, and attributes discarded (RFC 7606).
    #[serde(default)]
    pub updates_treated_as_withdraw: u64,
    #[serde(default)]
    pub attributes_discarded: u64,
    /// The peer's BFD session, when it runs one.
    #[serde(default)]
    pub bfd: Option<BfdReport>,
}

/// A BFD session (RFC 5880) as `vipd status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdReport {
    /// AdminDown, Down, Init or Up.
    pub state: String,
    pub remote_state: String,
    /// Why our side last left Up, and why the peer's did.
    pub local_diagnostic: String,
    pub remote_diagnostic: String,
    pub multihop: bool,
    /// What vipd asks for: its transmit and receive intervals and multiplier.
    pub min_tx_ms: u64,
    pub min_rx_ms: u64,
    pub multiplier: u8,
    /// How long the peer may be silent before the session fails (0 before it is heard).
    pub detection_ms: u64,
    pub uptime_seconds: Option<u64>,
    /// Times the session failed (left Up without an AdminDown).
    pub failures: u64,
    /// Packets from the peer refused (RFC 5880 §6.8.6, RFC 5881 §5).
    pub discarded: u64,
}

impl BfdReport {
    pub fn up(&self) -> bool {
        self.state == "Up"
    }
}

impl PeerReport {
    pub fn established(&self) -> bool {
        self.uptime_seconds.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// `namespace/name`.
    pub service: String,
    pub vips: Vec<VipReport>,
    /// Why the whole Service is not announced from this node (then `vips` may be empty).
    pub withheld: Option<Reason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipReport {
    pub vip: IpAddr,
    pub mode: String,
    /// The peers whose established session carries this VIP's family.
    pub announced_to: Vec<String>,
    pub withheld: Option<Reason>,
}

/// A typed reason: a stable code for scripts and the sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: &str, message: impl Into<String>) -> Reason {
        Reason {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What the owner loop decided for one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState {
    pub service: String,
    pub vips: Vec<(IpAddr, VipState)>,
    pub withheld: Option<Withheld>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VipState {
    /// Handed to the BGP speaker (announced to the established peers of its family).
    Routed,
    /// Held and announced on a link by this node (ARP/NDP: `via` names the interface).
    Held {
        mode: String,
        via: String,
    },
    Withheld(Withheld),
}

/// Why a VIP (or a whole Service) is not served from this node: [`crate::decide`]'s reason,
/// or what the owner loop learned after deciding. Typed to the end: `vipd status`, `/status`
/// and the metrics turn it into a [`Reason`] (code and sentence) only when they print.
#[derive(Debug, Clone, PartialEq)]
pub enum Withheld {
    /// Decided: the Service's gates, a VIP's family, DHCP, the Lease.
    Skip(Skip),
    /// BGP mode: its address could not be put on the interface.
    AddressMissing,
    /// BGP mode: no established session carries the VIP's family (yet).
    NoSession { family: String },
    /// ARP mode: leading; probing the link before claiming.
    Probing,
    /// ARP mode: another host already answers for it.
    AddressInUse { mac: String },
    /// ARP mode: the address or the socket could not be set up.
    ClaimFailed,
    /// ARP mode: leading, but this node has no interface for it.
    Unplaced,
    /// ARP mode: another node leads the Lease that elects it.
    NotLeader { lease: String },
    /// The control-plane VIP: this node's API server fails its health check.
    ApiServerUnhealthy { why: String },
    /// ARP mode's control-plane VIP: its interface is down.
    LinkDown { why: String },
}

impl Withheld {
    /// A stable CamelCase code, for `vipd status -o json` and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Withheld::Skip(s) => s.code(),
            Withheld::AddressMissing => "AddressMissing",
            Withheld::NoSession { .. } => "NoSession",
            Withheld::Probing => "Probing",
            Withheld::AddressInUse { .. } => "AddressInUse",
            Withheld::ClaimFailed => "ClaimFailed",
            Withheld::Unplaced => "NoInterface",
            Withheld::NotLeader { .. } => "NotLeader",
            Withheld::ApiServerUnhealthy { .. } => "ApiServerUnhealthy",
            Withheld::LinkDown { .. } => "InterfaceDown",
        }
    }

    /// The code and the sentence, as `vipd status` shows them.
    pub fn reason(&self) -> Reason {
        Reason::new(self.code(), self.to_string())
    }
}

impl std::fmt::Display for Withheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Withheld::Skip(s) => write!(f, "{s}"),
            Withheld::AddressMissing | Withheld::ClaimFailed => {
                f.write_str("the address could not be put on the interface (see the log)")
            }
            Withheld::NoSession { family } => write!(
                f,
                "no established BGP session carries {family}; announced once one is up"
            ),
            Withheld::Probing => f.write_str("leading: probing before claiming"),
            Withheld::AddressInUse { mac } => write!(f, "already answered by {mac}"),
            Withheld::Unplaced => {
                f.write_str("leading, but no interface for it (see the Warning Event)")
            }
            Withheld::NotLeader { lease } => write!(f, "this node does not lead Lease {lease}"),
            Withheld::ApiServerUnhealthy { why } => {
                write!(f, "this node's API server fails its health check: {why}")
            }
            Withheld::LinkDown { why } => write!(f, "not standing: {why}"),
        }
    }
}

impl From<Skip> for Withheld {
    fn from(s: Skip) -> Withheld {
        Withheld::Skip(s)
    }
}

/// Why vipd raises an Event on a Service; the Event's `reason` is [`EventReason::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    /// VIPs announced from a node.
    Announced,
    /// No longer announced from a node.
    Withdrawn,
    /// The IPAM allocator assigned an address.
    AddressAllocated,
    /// Another host answers for a VIP this node would claim.
    AddressInUse,
    /// No interface here for a VIP, or for a DHCP macvlan's parent.
    NoInterface,
    /// A DHCP client could not start.
    DhcpFailed,
    /// A UPnP port mapping failed.
    UpnpFailed,
    /// A problem in the Service's input, by its code (`InvalidLoadBalancerIP`, …).
    Problem(&'static str),
}

impl EventReason {
    pub fn code(self) -> &'static str {
        match self {
            EventReason::Announced => "Announced",
            EventReason::Withdrawn => "Withdrawn",
            EventReason::AddressAllocated => "AddressAllocated",
            EventReason::AddressInUse => "AddressInUse",
            EventReason::NoInterface => "NoInterface",
            EventReason::DhcpFailed => "DHCPFailed",
            EventReason::UpnpFailed => "UPnPFailed",
            EventReason::Problem(code) => code,
        }
    }

    /// Whether the Event is a Warning (else Normal).
    pub fn is_warning(self) -> bool {
        !matches!(
            self,
            EventReason::Announced | EventReason::Withdrawn | EventReason::AddressAllocated
        )
    }
}

/// Whether `vipd status` lists a Service: every one vipd would serve, not those of another type
/// or load balancer class.
pub fn listed(d: &ServiceDecision) -> bool {
    !matches!(
        d.skip,
        Some(Skip::NotLoadBalancer { .. } | Skip::ClassNotOurs { .. })
    )
}

pub fn peer_report(peer: SocketAddr, s: &PeerStatus, now: Instant) -> PeerReport {
    PeerReport {
        peer: peer.to_string(),
        state: s.state.clone(),
        uptime_seconds: s
            .established_since
            .map(|t| now.saturating_duration_since(t).as_secs()),
        families: s.families.iter().map(ToString::to_string).collect(),
        last_error: s.last_error.clone(),
        prefixes_sent: s.advertised,
        updates_sent: s.updates_sent,
        updates_received: s.updates_received,
        notifications_sent: s.notifications_sent,
        notifications_received: s.notifications_received,
        flaps: s.flaps,
        down_seconds: s
            .down_since
            .map(|t| now.saturating_duration_since(t).as_secs()),
        downs: s.downs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        updates_treated_as_withdraw: s.updates_treated_as_withdraw,
        attributes_discarded: s.attributes_discarded,
        bfd: s.bfd.as_ref().map(|b| bfd_report(b, now)),
    }
}

fn bfd_report(b: &crate::bfd::session::Report, now: Instant) -> BfdReport {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    BfdReport {
        state: b.status.state.to_string(),
        remote_state: b.status.remote_state.to_string(),
        local_diagnostic: b.status.local_diag.name().to_owned(),
        remote_diagnostic: b.status.remote_diag.name().to_owned(),
        multihop: b.multihop,
        min_tx_ms: ms(b.config.desired_min_tx),
        min_rx_ms: ms(b.config.required_min_rx),
        multiplier: b.config.detect_mult,
        detection_ms: ms(b.status.detection_time),
        uptime_seconds: b
            .up_since
            .map(|t| now.saturating_duration_since(t).as_secs()),
        failures: b.failures,
        discarded: b.discarded,
    }
}

/// The sessions that have been down for `after` or longer, one line each, for `/readyz`: an
/// agent whose peers are gone must not look ready (its VIPs are withheld everywhere).
pub fn stuck_sessions(
    peers: &[(SocketAddr, PeerStatus)],
    now: Instant,
    after: Duration,
) -> Vec<String> {
    peers
        .iter()
        .filter_map(|(peer, s)| {
            let down = now.saturating_duration_since(s.down_since?);
            (down >= after).then(|| {
                format!(
                    "BGP session with {peer} down for {}s ({})",
                    down.as_secs(),
                    s.last_error.as_deref().unwrap_or("never established")
                )
            })
        })
        .collect()
}

/// Joins the owner loop's last decisions with the peers' state now.
pub fn assemble(
    head: (String, String, Vec<String>),
    services: &[ServiceState],
    peers: Vec<PeerReport>,
) -> AgentReport {
    let (node, mode, not_ready) = head;
    let services = services
        .iter()
        .map(|s| ServiceReport {
            service: s.service.clone(),
            withheld: s.withheld.as_ref().map(Withheld::reason),
            vips: s
                .vips
                .iter()
                .map(|(vip, state)| vip_report(*vip, state, &peers))
                .collect(),
        })
        .collect();
    AgentReport {
        node,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode,
        not_ready,
        peers,
        services,
    }
}

fn vip_report(vip: IpAddr, state: &VipState, peers: &[PeerReport]) -> VipReport {
    let family = Family::of(vip).to_string();
    let (announced_to, withheld) = match state {
        VipState::Withheld(w) => (Vec::new(), Some(w.reason())),
        VipState::Held { mode, via } => {
            return VipReport {
                vip,
                mode: mode.clone(),
                announced_to: vec![via.clone()],
                withheld: None,
            }
        }
        VipState::Routed => {
            let to: Vec<String> = peers
                .iter()
                .filter(|p| p.established() && p.families.contains(&family))
                .map(|p| p.peer.clone())
                .collect();
            let why = to.is_empty().then(|| {
                Withheld::NoSession {
                    family: family.clone(),
                }
                .reason()
            });
            (to, why)
        }
    };
    VipReport {
        vip,
        mode: "bgp".into(),
        announced_to,
        withheld,
    }
}

/// `vipd status` as text: peers first, then one line per VIP.
pub fn render_text(r: &AgentReport) -> String {
    let mut out = String::new();
    let ready = if r.not_ready.is_empty() {
        "ready".to_owned()
    } else {
        format!("NOT READY: {}", r.not_ready.join("; "))
    };
    let _ = writeln!(
        out,
        "node {}  vipd {}  mode {}  {ready}",
        r.node, r.version, r.mode
    );
    let _ = writeln!(
        out,
        "\nPEER{:<24}STATE        UP/DOWN   SENT  LAST ERROR",
        ""
    );
    if r.peers.is_empty() {
        let _ = writeln!(out, "(no peers configured)");
    }
    for p in &r.peers {
        // How long it has been up, or down: a session stuck down shows at a glance.
        let uptime = match (p.uptime_seconds, p.down_seconds) {
            (Some(up), _) => duration(up),
            (None, Some(down)) => format!("down {}", duration(down)),
            (None, None) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<28}{:<13}{:<10}{:<6}{}",
            p.peer,
            p.state,
            uptime,
            p.prefixes_sent,
            p.last_error.as_deref().unwrap_or("-")
        );
        if let Some(b) = &p.bfd {
            let since = match b.uptime_seconds {
                Some(up) => format!(" for {}", duration(up)),
                None => format!(" ({})", b.local_diagnostic),
            };
            let _ = writeln!(
                out,
                "  BFD {}{since}, peer {}; tx/rx {}/{} ms x {}, detection {} ms; {} failures",
                b.state,
                b.remote_state,
                b.min_tx_ms,
                b.min_rx_ms,
                b.multiplier,
                b.detection_ms,
                b.failures
            );
        }
    }
    let _ = writeln!(
        out,
        "\nSERVICE{:<25}VIP{:<37}ANNOUNCED TO / WHY NOT",
        "", ""
    );
    if r.services.is_empty() {
        let _ = writeln!(out, "(no LoadBalancer Services for vipd)");
    }
    for s in &r.services {
        if s.vips.is_empty() {
            let why = s.withheld.as_ref().map_or("-", |w| w.message.as_str());
            let _ = writeln!(out, "{:<32}{:<40}withheld: {why}", s.service, "-");
        }
        for v in &s.vips {
            let to = match &v.withheld {
                Some(w) => format!("withheld: {}", w.message),
                None => format!("{} to {}", v.mode, v.announced_to.join(", ")),
            };
            let _ = writeln!(out, "{:<32}{:<40}{to}", s.service, v.vip);
        }
    }
    out
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn up(families: Vec<Family>, now: Instant) -> PeerStatus {
        PeerStatus {
            state: "Established".into(),
            established_since: Some(now - Duration::from_secs(75)),
            families,
            advertised: 2,
            updates_sent: 3,
            ..Default::default()
        }
    }

    fn head() -> (String, String, Vec<String>) {
        ("n1".into(), "bgp".into(), vec![])
    }

    #[test]
    fn a_routed_vip_is_announced_to_the_established_peers_of_its_family_only() {
        let now = Instant::now();
        let peers = vec![
            peer_report(
                "10.0.0.1:179".parse().unwrap(),
                &up(vec![Family::Ipv4], now),
                now,
            ),
            peer_report(
                "[fd00::1]:179".parse().unwrap(),
                &up(vec![Family::Ipv6], now),
                now,
            ),
            peer_report(
                "10.0.0.2:179".parse().unwrap(),
                &PeerStatus {
                    state: "Active".into(),
                    last_error: Some("connection refused".into()),
                    ..Default::default()
                },
                now,
            ),
        ];
        assert_eq!(peers[0].uptime_seconds, Some(75));
        let services = [ServiceState {
            service: "default/web".into(),
            vips: vec![("192.0.2.10".parse().unwrap(), VipState::Routed)],
            withheld: None,
        }];
        let r = assemble(head(), &services, peers);
        let v = &r.services[0].vips[0];
        assert_eq!(v.announced_to, vec!["10.0.0.1:179".to_string()]);
        assert_eq!(v.withheld, None);
    }

    #[test]
    fn a_routed_vip_without_a_session_for_its_family_says_so() {
        let now = Instant::now();
        let peers = vec![peer_report(
            "10.0.0.1:179".parse().unwrap(),
            &up(vec![Family::Ipv4], now),
            now,
        )];
        let services = [ServiceState {
            service: "default/web6".into(),
            vips: vec![("2001:db8::10".parse().unwrap(), VipState::Routed)],
            withheld: None,
        }];
        let r = assemble(head(), &services, peers);
        let v = &r.services[0].vips[0];
        assert!(v.announced_to.is_empty());
        assert_eq!(v.withheld.as_ref().unwrap().code, "NoSession");
        assert!(v
            .withheld
            .as_ref()
            .unwrap()
            .message
            .contains("ipv6-unicast"));
    }

    #[test]
    fn a_peer_with_bfd_shows_its_session_in_json_and_text() {
        use crate::bfd::packet::{Diag, State};
        use crate::bfd::session::{Config, Report, Status};
        let now = Instant::now();
        let mut s = up(vec![Family::Ipv4], now);
        s.bfd = Some(Report {
            config: Config::default(),
            multihop: false,
            status: Status {
                state: State::Down,
                remote_state: State::Down,
                local_diag: Diag::DETECTION_TIME_EXPIRED,
                remote_diag: Diag::NONE,
                local_discriminator: 7,
                remote_discriminator: 0,
                detection_time: Duration::from_millis(900),
                transmit_interval: Duration::from_secs(1),
            },
            failures: 2,
            discarded: 1,
            up_since: None,
        });
        let p = peer_report("10.0.0.1:179".parse().unwrap(), &s, now);
        let b = p.bfd.clone().expect("BFD in the report");
        assert_eq!(
            (b.state.as_str(), b.local_diagnostic.as_str(), b.failures),
            ("Down", "control detection time expired", 2)
        );
        assert!(!b.up());
        let text = render_text(&assemble(head(), &[], vec![p]));
        assert!(
            text.contains(
                "BFD Down (control detection time expired), peer Down; tx/rx 300/300 ms x 3, detection 900 ms; 2 failures"
            ),
            "{text}"
        );
    }

    #[test]
    fn text_names_each_peer_and_each_vip_with_its_reason() {
        let now = Instant::now();
        let down = PeerStatus {
            state: "Active".into(),
            down_since: Some(now - Duration::from_secs(200)),
            last_error: Some("connection closed: peer closed the connection".into()),
            ..Default::default()
        };
        let peers = vec![
            peer_report(
                "10.0.0.1:179".parse().unwrap(),
                &up(vec![Family::Ipv4], now),
                now,
            ),
            peer_report("10.0.0.2:179".parse().unwrap(), &down, now),
        ];
        let services = [
            ServiceState {
                service: "default/web".into(),
                vips: vec![("192.0.2.10".parse().unwrap(), VipState::Routed)],
                withheld: None,
            },
            ServiceState {
                service: "default/idle".into(),
                vips: vec![(
                    "192.0.2.11".parse().unwrap(),
                    VipState::Withheld(Withheld::Skip(Skip::NoEndpoints)),
                )],
                withheld: Some(Withheld::Skip(Skip::NoEndpoints)),
            },
        ];
        let text = render_text(&assemble(head(), &services, peers));
        assert!(text.contains("10.0.0.1:179"), "{text}");
        assert!(text.contains("Established  75s"), "{text}");
        assert!(
            text.contains(
                "Active       down 3m   0     connection closed: peer closed the connection"
            ),
            "{text}"
        );
        assert!(text.contains("192.0.2.10") && text.contains("bgp to 10.0.0.1:179"));
        assert!(text.contains("192.0.2.11") && text.contains("withheld: no serving endpoint"));
    }

    #[test]
    fn a_vip_held_on_a_link_is_announced_there_whatever_the_peers() {
        let services = [ServiceState {
            service: "default/web".into(),
            vips: vec![(
                "192.0.2.10".parse().unwrap(),
                VipState::Held {
                    mode: "arp".into(),
                    via: "eth0".into(),
                },
            )],
            withheld: None,
        }];
        let r = assemble(head(), &services, vec![]);
        let v = &r.services[0].vips[0];
        assert_eq!(
            (v.mode.as_str(), v.announced_to.clone()),
            ("arp", vec!["eth0".to_string()])
        );
        assert!(render_text(&r).contains("arp to eth0"));
    }

    #[test]
    fn reasons_keep_the_codes_scripts_read_and_say_why_in_words() {
        let cases = [
            (Withheld::Skip(Skip::NoEndpoints), "NoEndpoints"),
            (Withheld::AddressMissing, "AddressMissing"),
            (
                Withheld::NoSession {
                    family: "ipv6-unicast".into(),
                },
                "NoSession",
            ),
            (Withheld::Probing, "Probing"),
            (
                Withheld::AddressInUse {
                    mac: "02:00:00:00:00:01".into(),
                },
                "AddressInUse",
            ),
            (Withheld::ClaimFailed, "ClaimFailed"),
            (Withheld::Unplaced, "NoInterface"),
            (
                Withheld::NotLeader {
                    lease: "default/kubevip-web".into(),
                },
                "NotLeader",
            ),
        ];
        for (w, code) in cases {
            let r = w.reason();
            assert_eq!(r.code, code);
            assert!(!r.message.is_empty() && r.message != code, "{r:?}");
        }
        assert_eq!(
            Withheld::NotLeader {
                lease: "default/kubevip-web".into()
            }
            .to_string(),
            "this node does not lead Lease default/kubevip-web"
        );
        assert!(!EventReason::Announced.is_warning());
        assert!(EventReason::AddressInUse.is_warning());
        assert_eq!(EventReason::DhcpFailed.code(), "DHCPFailed");
        assert_eq!(
            EventReason::Problem("InvalidLoadBalancerIP").code(),
            "InvalidLoadBalancerIP"
        );
    }

    #[test]
    fn the_json_form_round_trips() {
        let r = assemble(
            head(),
            &[ServiceState {
                service: "a/b".into(),
                vips: vec![],
                withheld: Some(Withheld::Skip(Skip::NoAddress)),
            }],
            vec![],
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AgentReport>(&json).unwrap(), r);
    }

    #[test]
    fn only_sessions_down_for_the_whole_grace_period_make_the_agent_unready() {
        let now = Instant::now();
        let status = |down: Option<u64>, err: Option<&str>| PeerStatus {
            down_since: down.map(|s| now - Duration::from_secs(s)),
            last_error: err.map(str::to_owned),
            ..Default::default()
        };
        let peers = vec![
            ("10.0.0.1:179".parse().unwrap(), status(None, None)),
            (
                "10.0.0.2:179".parse().unwrap(),
                status(Some(119), Some("x")),
            ),
            (
                "10.0.0.3:179".parse().unwrap(),
                status(
                    Some(120),
                    Some("connection closed: peer closed the connection"),
                ),
            ),
            ("10.0.0.4:179".parse().unwrap(), status(Some(500), None)),
        ];
        assert_eq!(
            stuck_sessions(&peers, now, Duration::from_secs(120)),
            [
                "BGP session with 10.0.0.3:179 down for 120s (connection closed: peer closed the connection)",
                "BGP session with 10.0.0.4:179 down for 500s (never established)",
            ]
        );
    }
}
