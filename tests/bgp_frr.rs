//! vipd's BGP speaker against FRR as the top-of-rack router, in network namespaces (root and
//! the Debian package needed; skipped loudly otherwise). Scenarios: crates/testbed/src/scenarios.rs.

use vipd_testbed as support;

use support::frr::Frr;
use support::scenarios;

#[test]
fn frr_receives_ipv4_and_ipv6_vips_with_next_hop_as_path_and_origin() {
    scenarios::ipv4_and_ipv6_vips_arrive::<Frr>();
}

#[test]
fn frr_withdraws_a_vip_removed_on_reload() {
    scenarios::removed_vip_is_withdrawn::<Frr>();
}

#[test]
fn frr_session_with_tcp_md5() {
    scenarios::md5_with_the_right_password::<Frr>();
}

#[test]
fn frr_session_with_a_wrong_tcp_md5_password_stays_down() {
    scenarios::md5_with_a_wrong_password_stays_down::<Frr>();
}

#[test]
fn frr_multihop_between_loopbacks() {
    scenarios::multihop_between_loopbacks::<Frr>();
}

#[test]
fn frr_on_a_non_default_port() {
    scenarios::non_default_port::<Frr>();
}

#[test]
fn frr_restart_gets_the_full_table_back() {
    scenarios::router_restart_restores_the_table::<Frr>();
}

#[test]
fn frr_killed_with_sigkill_ten_times_gets_the_table_back_each_time() {
    scenarios::router_killed_comes_back::<Frr>();
}

#[test]
fn frr_link_flap_ten_times_gets_the_table_back_each_time() {
    scenarios::link_flap_comes_back::<Frr>();
}

#[test]
fn frr_table_empties_on_vipd_shutdown() {
    scenarios::cease_on_shutdown_empties_the_table::<Frr>();
}
