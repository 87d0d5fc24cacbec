#!/usr/bin/env bash
# Runs every test of the workspace. As root it first installs the Debian packages the
# interoperability tests need (BIRD 2, FRR, GoBGP, dnsmasq, miniupnpd, iproute2, tcpdump, arping, ndisc6), without letting their
# maintainer scripts start the daemons in the host's network namespace. Without root, or
# without a package, those tests skip and say why.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

# dnsmasq-base: DHCP server (dhcp_dnsmasq); miniupnpd-nftables, nftables, stun-server, miniupnpc:
# UPnP IGD, its ruleset, the STUN server that gives it a usable external address, upnpc.
# iputils-arping, ndisc6: the client side of the ARP/NDP tests (l2_arp). prometheus (with
# promtool): scrapes /metrics and unit-tests examples/prometheus/vipd-alerts.yaml (tests/prometheus.rs).
# openssl: the test CA and the TLS /livez stand-in of the control-plane VIP's tests.
PKGS=(bird2 frr gobgpd iproute2 iputils-ping iputils-arping ndisc6 tcpdump procps dnsmasq-base miniupnpd-nftables nftables stun-server miniupnpc python3-prometheus-client prometheus openssl)

install_packages() {
	local missing=()
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	echo "test.sh: installing ${missing[*]}" >&2
	local made_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Keep bird/frr from starting in the root namespace during installation.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
	[[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
	return 0
}

# kubectl drives the in-process API server in crates/fake-apiserver/tests/apiserver.rs. It is not in Debian's main
# archive under that name; Debian's kubernetes-client package provides an (older) one.
install_kubectl() {
	command -v kubectl >/dev/null && return 0
	echo "test.sh: kubectl missing; installing Debian's kubernetes-client" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client
}

if [[ $(id -u) -eq 0 ]]; then
	install_packages
	install_kubectl
	# Everything a test needs is installed now: a skip would hide a broken setup, so it fails.
	export VIPD_NO_SKIP=1
else
	echo "test.sh: not root: the BIRD/FRR/GoBGP namespace tests will skip (they need CAP_NET_ADMIN)" >&2
fi

cargo test --workspace "$@"
