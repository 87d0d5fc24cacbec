//! vipd's BGP speaker against GoBGP as the top-of-rack router, in network namespaces (root and
//! the Debian package needed; skipped loudly otherwise). Scenarios: crates/testbed/src/scenarios.rs.

use vipd_testbed as support;

use support::gobgp::GoBgp;
use support::scenarios;

#[test]
fn gobgp_receives_ipv4_and_ipv6_vips_with_next_hop_as_path_and_origin() {
    scenarios::ipv4_and_ipv6_vips_arrive::<GoBgp>();
}

#[test]
fn gobgp_withdraws_a_vip_removed_on_reload() {
    scenarios::removed_vip_is_withdrawn::<GoBgp>();
}

#[test]
fn gobgp_session_with_tcp_md5() {
    scenarios::md5_with_the_right_password::<GoBgp>();
}

#[test]
fn gobgp_session_with_a_wrong_tcp_md5_password_stays_down() {
    scenarios::md5_with_a_wrong_password_stays_down::<GoBgp>();
}

#[test]
fn gobgp_multihop_between_loopbacks() {
    scenarios::multihop_between_loopbacks::<GoBgp>();
}

#[test]
fn gobgp_on_a_non_default_port() {
    scenarios::non_default_port::<GoBgp>();
}

#[test]
fn gobgp_restart_gets_the_full_table_back() {
    scenarios::router_restart_restores_the_table::<GoBgp>();
}

#[test]
fn gobgp_killed_with_sigkill_ten_times_gets_the_table_back_each_time() {
    scenarios::router_killed_comes_back::<GoBgp>();
}

#[test]
fn gobgp_table_empties_on_vipd_shutdown() {
    scenarios::cease_on_shutdown_empties_the_table::<GoBgp>();
}
