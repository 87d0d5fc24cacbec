#!/usr/bin/env bash
# The long chaos campaign: tests/chaos.rs (3 agents, 200 Services, BIRD then FRR, faults one
# after another for CHAOS_SECONDS per router, default 3600), then tests/chaos_lan.rs (an ARP-mode
# agent with DHCP-leased, UPnP-forwarded Services while dnsmasq vanishes and the gateway reboots,
# for CHAOS_SECONDS too). CHAOS_TESTS picks some ("chaos_lan" alone, say). Needs root and the packages
# scripts/test.sh installs. Each run's one-line summary (faults per kind, slowest convergence,
# violations, agents' RSS and fds) is appended to CHAOS_REPORT (default target/chaos-report.txt);
# RELIABILITY.md records the campaigns. CHAOS_SEED replays a run.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export CHAOS_SECONDS="${CHAOS_SECONDS:-3600}"
export CHAOS_REPORT="${CHAOS_REPORT:-$PWD/target/chaos-report.txt}"
export VIPD_NO_SKIP=1
for t in ${CHAOS_TESTS:-chaos chaos_lan}; do
	cargo test --test "$t" -- --nocapture --test-threads=1
done
echo "chaos.sh: summaries appended to $CHAOS_REPORT"
