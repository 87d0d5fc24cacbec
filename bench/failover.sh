#!/usr/bin/env bash
# Failover after a cut path: BFD (300 ms x 3) against hold timers of 9 s and 90 s, on FRR and
# BIRD, in one run (about 7 minutes). Prints the table of BENCHMARKS.md. Root, FRR, BIRD 2 and
# nftables needed.
set -euo pipefail
cd "$(dirname "$0")/.."
VIPD_NO_SKIP=1 cargo test --test bfd failover_table -- --ignored --nocapture
