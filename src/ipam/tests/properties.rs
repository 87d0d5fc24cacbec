//! Random histories: Services created, deleted, switched between LoadBalancer and ClusterIP,
//! the ConfigMap edited or deleted, and the allocator planning — completely, or dying after
//! writing only part of a plan, the next plan (a restart, or a new leader) reading nothing but
//! the Services. Each write is checked as it is applied:
//! - it goes to a LoadBalancer Service without any address (static ones are never touched);
//! - every address lies in a pool of the Service's namespace (its own or global), one per
//!   family, never `.0`/`.255`/unspecified;
//! - no Service that holds the address may not share it with the new one.
//!
//! And every plan is the same whatever order the Services come in, and every Service waiting
//! for an address gets one or is told why.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const STATIC: [&str; 8] = [
    "10.0.0.1",
    "10.0.0.5",
    "10.0.0.255",
    "10.0.1.1",
    "1.1.1.1",
    "fd00::1",
    "0.0.0.0",
    "::",
];
const CIDRS: [&str; 6] = [
    "10.0.0.0/29",
    "10.0.0.4/30",
    "10.0.0.254/31",
    "fd00::/126",
    "10.0.1.0/30",
    "banana",
];
const RANGES: [&str; 5] = [
    "10.0.0.250-10.0.1.2",
    "10.0.0.3-10.0.0.6",
    "fd00::2-fd00::5",
    "10.0.0.9-10.0.0.7",
    "x",
];

/// One simulated Service.
#[derive(Debug, Clone)]
struct Sim {
    ns: &'static str,
    name: String,
    created: u32,
    resource_version: u64,
    load_balancer: bool,
    ports: Vec<(u16, &'static str)>,
    policy: Option<&'static str>,
    families: Vec<&'static str>,
    /// What the user wrote: (address, in spec.loadBalancerIP rather than the annotation).
    user: Option<(&'static str, bool)>,
    /// What the allocator wrote.
    written: Option<Vec<IpAddr>>,
}

impl Sim {
    fn key(&self) -> ServiceKey {
        key(self.ns, &self.name)
    }

    fn service(&self) -> Arc<Service> {
        let mut annotations = serde_json::Map::new();
        let mut spec_ip = None;
        if let Some((address, in_spec)) = self.user {
            if in_spec {
                spec_ip = Some(address.to_owned());
            } else {
                annotations.insert("kube-vip.io/loadbalancerIPs".to_owned(), address.into());
            }
        }
        if let Some(written) = &self.written {
            let list: Vec<String> = written.iter().map(ToString::to_string).collect();
            annotations.insert(
                "kube-vip.io/loadbalancerIPs".to_owned(),
                list.join(",").into(),
            );
            spec_ip = Some(written[0].to_string());
        }
        svc(json!({
            "metadata": {"name": self.name, "namespace": self.ns,
                         "creationTimestamp": timestamp(self.created),
                         "resourceVersion": self.resource_version.to_string(),
                         "annotations": annotations},
            "spec": {
                "type": if self.load_balancer { "LoadBalancer" } else { "ClusterIP" },
                "ports": self.ports.iter().map(|(p, proto)| json!({"port": p, "protocol": proto}))
                             .collect::<Vec<_>>(),
                "ipFamilyPolicy": self.policy,
                "ipFamilies": self.families,
                "loadBalancerIP": spec_ip,
            },
        }))
    }

    /// The addresses this Service holds, as the allocator must see them.
    fn holds(&self) -> Vec<IpAddr> {
        if !self.load_balancer {
            return vec![];
        }
        let held = match (&self.written, self.user) {
            (Some(w), _) => w.clone(),
            (None, Some((address, _))) => vec![ip(address)],
            (None, None) => vec![],
        };
        held.into_iter().filter(|a| !a.is_unspecified()).collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        ns: usize,
        ports: Vec<(u16, bool)>,
        stack: usize,
        user: Option<(usize, bool)>,
    },
    Delete(usize),
    ToggleType(usize),
    EditConfig(Option<BTreeMap<String, String>>),
    /// Plan and write everything.
    Reconcile,
    /// Plan, write only the first `n` allocations, die.
    Crash(usize),
}

fn config() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let list = |from: &'static [&'static str]| {
        proptest::option::of(
            proptest::sample::subsequence(from.to_vec(), 1..=2).prop_map(|v| v.join(",")),
        )
    };
    let flag = |values: &'static [&'static str]| {
        proptest::option::of(proptest::sample::select(values.to_vec()))
    };
    proptest::option::weighted(
        0.9,
        (
            (
                list(&CIDRS),
                list(&RANGES),
                list(&CIDRS),
                list(&CIDRS),
                list(&RANGES),
            ),
            (
                flag(&["true", "false", "maybe"]),
                flag(&["true", "false"]),
                flag(&["desc", "asc"]),
                flag(&["true", "false"]),
            ),
        )
            .prop_map(|(pools, settings)| {
                let (cidr_a, range_a, cidr_b, cidr_global, range_global) = pools;
                let (share_a, share_global, order, skip) = settings;
                [
                    ("cidr-a", cidr_a),
                    ("range-a", range_a),
                    ("cidr-b", cidr_b),
                    ("cidr-global", cidr_global),
                    ("range-global", range_global),
                    ("allow-share-a", share_a.map(str::to_owned)),
                    ("allow-share-global", share_global.map(str::to_owned)),
                    ("search-order", order.map(str::to_owned)),
                    ("skip-end-ips-in-cidr", skip.map(str::to_owned)),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect()
            }),
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            0..NAMESPACES.len(),
            proptest::collection::vec((prop_oneof![Just(80u16), Just(443), Just(53)], any::<bool>()), 0..3),
            0..6usize,
            proptest::option::weighted(0.3, (0..STATIC.len(), any::<bool>())),
        )
            .prop_map(|(ns, ports, stack, user)| Op::Create { ns, ports, stack, user }),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::ToggleType),
        1 => config().prop_map(Op::EditConfig),
        3 => Just(Op::Reconcile),
        1 => any::<usize>().prop_map(Op::Crash),
    ]
}

/// Rule 5, written out again from the ConfigMap.
fn may_share(pools: &Pools, a: &Sim, b: &Sim, address: &IpAddr) -> bool {
    let ports = |s: &Sim| -> BTreeSet<(u16, &str)> { s.ports.iter().copied().collect() };
    address.is_ipv4()
        && pools.allow_share(a.ns)
        && pools.allow_share(b.ns)
        && !a.ports.is_empty()
        && !b.ports.is_empty()
        && ports(a).is_disjoint(&ports(b))
}

struct World {
    services: Vec<Sim>,
    config: Option<BTreeMap<String, String>>,
    clock: u32,
    next_rv: u64,
}

impl World {
    fn services(&self) -> Vec<Arc<Service>> {
        self.services.iter().map(Sim::service).collect()
    }

    fn plan(&self) -> Result<IpamPlan, TestCaseError> {
        let services = self.services();
        let p = plan(&services, self.config.as_ref(), &DecideConfig::default());
        // The same plan whatever order the Services come in.
        let mut shuffled = services.clone();
        shuffled.reverse();
        let half = shuffled.len() / 2;
        shuffled.rotate_left(half);
        prop_assert_eq!(
            &plan(&shuffled, self.config.as_ref(), &DecideConfig::default()),
            &p
        );
        // Every Service waiting for an address gets one or is told why.
        for s in &self.services {
            let waiting = s.load_balancer && s.user.is_none() && s.written.is_none();
            let served = p.allocations.iter().any(|a| a.service == s.key());
            let problems = p
                .problems
                .get(&s.key())
                .map(Vec::as_slice)
                .unwrap_or_default();
            if waiting {
                prop_assert!(
                    served || !problems.is_empty(),
                    "{} neither served nor told",
                    s.key()
                );
            } else {
                // A Service with addresses is only ever told that one is taken.
                prop_assert!(!served);
                prop_assert!(
                    problems
                        .iter()
                        .all(|p| matches!(p, IpamProblem::AddressInUse { .. })),
                    "{}: {:?}",
                    s.key(),
                    problems
                );
            }
        }
        Ok(p)
    }

    fn apply(&mut self, allocation: &Allocation) -> Result<(), TestCaseError> {
        let pools = self.config.as_ref().map(Pools::parse);
        let Some(pools) = pools else {
            return Err(TestCaseError::fail("an allocation without a ConfigMap"));
        };
        let i = self
            .services
            .iter()
            .position(|s| s.key() == allocation.service)
            .ok_or_else(|| TestCaseError::fail("an allocation for an unknown Service"))?;
        let target = self.services[i].clone();
        // Only a LoadBalancer Service without any address is written; static ones never.
        prop_assert!(target.load_balancer);
        prop_assert!(
            target.user.is_none() && target.written.is_none(),
            "{:?}",
            target
        );
        prop_assert_eq!(
            allocation.resource_version.clone(),
            Some(target.resource_version.to_string())
        );
        let families: BTreeSet<Family> = allocation.addresses.iter().map(Family::of).collect();
        prop_assert!(!allocation.addresses.is_empty());
        prop_assert_eq!(families.len(), allocation.addresses.len());
        for address in &allocation.addresses {
            let family = Family::of(address);
            prop_assert!(
                pools
                    .scopes_for(target.ns)
                    .any(|s| s.set(family).contains(address)),
                "{} outside every pool of namespace {}",
                address,
                target.ns
            );
            let octet = match address {
                IpAddr::V4(a) => Some(a.octets()[3]),
                IpAddr::V6(_) => None,
            };
            prop_assert!(!address.is_unspecified() && octet != Some(0) && octet != Some(255));
            for other in &self.services {
                if other.key() != target.key() && other.holds().contains(address) {
                    prop_assert!(
                        may_share(&pools, &target, other, address),
                        "{} given to {} while {} holds it",
                        address,
                        target.key(),
                        other.key()
                    );
                }
            }
        }
        self.next_rv += 1;
        let s = &mut self.services[i];
        s.written = Some(allocation.addresses.clone());
        s.resource_version = self.next_rv;
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Create {
                ns,
                ports,
                stack,
                user,
            } => {
                self.clock += 1;
                self.next_rv += 1;
                let (policy, families): (Option<&'static str>, Vec<&'static str>) = match stack {
                    0 => (None, vec![]),
                    1 => (Some("SingleStack"), vec!["IPv4"]),
                    2 => (Some("SingleStack"), vec!["IPv6"]),
                    3 => (Some("PreferDualStack"), vec!["IPv4", "IPv6"]),
                    4 => (Some("RequireDualStack"), vec!["IPv6", "IPv4"]),
                    _ => (Some("RequireDualStack"), vec!["IPv4", "IPv6"]),
                };
                self.services.push(Sim {
                    ns: NAMESPACES[ns],
                    name: format!("s{}", self.clock),
                    created: self.clock,
                    resource_version: self.next_rv,
                    load_balancer: true,
                    ports: ports
                        .into_iter()
                        .map(|(p, udp)| (p, if udp { "UDP" } else { "TCP" }))
                        .collect(),
                    policy,
                    families,
                    user: user.map(|(i, in_spec)| (STATIC[i], in_spec)),
                    written: None,
                });
            }
            Op::Delete(i) if !self.services.is_empty() => {
                let i = i % self.services.len();
                self.services.remove(i);
            }
            Op::ToggleType(i) if !self.services.is_empty() => {
                // The annotation stays, as it does in Kubernetes: back as a LoadBalancer, the
                // Service claims its old address again (and is warned if it was reused).
                let i = i % self.services.len();
                self.next_rv += 1;
                let s = &mut self.services[i];
                s.load_balancer = !s.load_balancer;
                s.resource_version = self.next_rv;
            }
            Op::Delete(_) | Op::ToggleType(_) => {}
            Op::EditConfig(config) => self.config = config,
            Op::Reconcile => {
                for a in self.plan()?.allocations {
                    self.apply(&a)?;
                }
            }
            Op::Crash(n) => {
                let p = self.plan()?;
                let n = n % (p.allocations.len() + 1);
                for a in &p.allocations[..n] {
                    self.apply(a)?;
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_never_give_an_address_twice_or_outside_the_pools(
        initial in config(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut world = World { services: vec![], config: initial, clock: 0, next_rv: 0 };
        for op in ops {
            world.step(op)?;
        }
        // A last full plan after the history, from the Services alone.
        world.step(Op::Reconcile)?;
    }
}
