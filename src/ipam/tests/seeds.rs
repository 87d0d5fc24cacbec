//! The guide's seed examples ("The Kube-vip Cloud Provider configmap"), address by address.

use super::*;

#[test]
fn seed_cidr_default_29_gives_200_to_207_then_the_global_pool() {
    let p = run(&many("default", 10), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.200",
            "192.168.0.201",
            "192.168.0.202",
            "192.168.0.203",
            "192.168.0.204",
            "192.168.0.205",
            "192.168.0.206",
            "192.168.0.207",
            "192.168.0.240",
            "192.168.0.241",
        ]
    );
    assert_eq!(
        p.allocations[0],
        alloc("default", "s00", &["192.168.0.200"])
    );
    assert!(p.problems.is_empty());
}

#[test]
fn seed_range_development_gives_210_to_219_then_the_global_pool() {
    let p = run(&many("development", 11), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.210",
            "192.168.0.211",
            "192.168.0.212",
            "192.168.0.213",
            "192.168.0.214",
            "192.168.0.215",
            "192.168.0.216",
            "192.168.0.217",
            "192.168.0.218",
            "192.168.0.219",
            "192.168.0.240",
        ]
    );
    assert!(p.problems.is_empty());
}

#[test]
fn seed_two_cidrs_for_finance_give_both_blocks_as_kube_vip_cloud_provider_reads_them() {
    // 192.168.0.220/29 and 192.168.0.230/29 have host bits set: the blocks are .216-.223 and
    // .224-.231, one run of 16 addresses; every finance Service is told so.
    let p = run(&many("finance", 17), &guide());
    let want: Vec<String> = (216..=231)
        .map(|i| format!("192.168.0.{i}"))
        .chain(["192.168.0.240".to_owned()])
        .collect();
    assert_eq!(handed_out(&p), want);
    let host_bits = |entry: &str, network: &str| {
        IpamProblem::Pool(PoolError::HostBitsSet {
            key: "cidr-finance".to_owned(),
            entry: entry.to_owned(),
            network: network.parse().expect("fixture is a CIDR"),
        })
    };
    for i in 0..17 {
        assert_eq!(
            problems(&p, "finance", &format!("s{i:02}")),
            [
                host_bits("192.168.0.220/29", "192.168.0.216/29"),
                host_bits("192.168.0.230/29", "192.168.0.224/29"),
            ]
        );
    }
    assert_eq!(p.config_problems.len(), 2);
}

#[test]
fn seed_cidr_global_serves_any_other_namespace_until_exhausted() {
    let p = run(&many("shop", 9), &guide());
    assert_eq!(
        handed_out(&p),
        [
            "192.168.0.240",
            "192.168.0.241",
            "192.168.0.242",
            "192.168.0.243",
            "192.168.0.244",
            "192.168.0.245",
            "192.168.0.246",
            "192.168.0.247",
        ]
    );
    assert_eq!(
        p.problems,
        BTreeMap::from([(
            key("shop", "s08"),
            vec![IpamProblem::Exhausted {
                family: Family::V4,
                keys: vec!["cidr-global".to_owned()]
            }]
        )])
    );
}

#[test]
fn seed_namespaces_together_never_hand_out_an_address_of_overlapping_pools_twice() {
    // range-development (.210-.219) overlaps finance's .216-.231.
    let mut services = many("development", 10);
    services.push(fresh("finance", "f", 100));
    services.push(fresh("default", "d", 101));
    services.push(fresh("shop", "g", 102));
    let p = run(&services, &guide());
    assert_eq!(
        &handed_out(&p)[10..],
        ["192.168.0.220", "192.168.0.200", "192.168.0.240"]
    );
}

#[test]
fn seed_quick_start_global_cidr_and_global_range() {
    let p = run(&many("any", 2), &cm(&[("cidr-global", "192.168.0.220/29")]));
    assert_eq!(handed_out(&p), ["192.168.0.216", "192.168.0.217"]);
    let p = run(
        &many("any", 12),
        &cm(&[("range-global", "192.168.1.220-192.168.1.230")]),
    );
    let want: Vec<String> = (220..=230).map(|i| format!("192.168.1.{i}")).collect();
    assert_eq!(handed_out(&p), want);
    assert_eq!(p.problems.len(), 1);
}
