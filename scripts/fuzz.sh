#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) with cargo-fuzz on the nightly toolchain, without a
# sanitizer (vipd's parsers are safe Rust: a panic or an assertion is the finding; the one
# `unsafe` file, src/sys.rs, parses nothing).
#
#   scripts/fuzz.sh                 the long campaign: FUZZ_RUNS executions per target
#                                   (default 10,000,000), a line per target in FUZZ_REPORT
#   FUZZ_SECONDS=10 scripts/fuzz.sh CI's short run: each target for that many seconds
#   FUZZ_TARGETS="bgp_wire decide"  only these
#   FUZZ_JOBS=2                     targets run side by side (default 1)
#   FUZZ_MAX_SECONDS=600            with FUZZ_RUNS: also stop a target after that long
#
# The corpora in fuzz/corpus/ are kept in the repository and grow with each campaign; a crash
# is written to fuzz/artifacts/<target>/ and fails the run.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
: "${FUZZ_REPORT:=target/fuzz-report.txt}"
mkdir -p "$(dirname "$FUZZ_REPORT")"
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^vipd-fuzz$')}
cargo +nightly fuzz build -s none
if [[ -n ${FUZZ_SECONDS:-} ]]; then
	limit=(-max_total_time="$FUZZ_SECONDS")
else
	limit=(-runs="${FUZZ_RUNS:-10000000}")
	[[ -n ${FUZZ_MAX_SECONDS:-} ]] && limit+=(-max_total_time="$FUZZ_MAX_SECONDS")
fi
run_one() {
	local t=$1 log
	log=$(mktemp)
	mkdir -p "fuzz/corpus/$t"
	if ! cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1; then
		tail -40 "$log" >&2
		echo "fuzz.sh: $t FAILED (the input is in fuzz/artifacts/$t/)" >&2
		return 1
	fi
	local execs cov
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -E '^#[0-9]+.*DONE' "$log" | sed -n 's/.*cov: \([0-9]*\).*/\1/p' | tail -1)
	echo "$t execs=$execs cov=$cov corpus=$(ls "fuzz/corpus/$t" | wc -l) date=$(date -u +%F) crashes=0" | tee -a "$FUZZ_REPORT"
	rm -f "$log"
}
export -f run_one
export FUZZ_REPORT
fail=0
if [[ ${FUZZ_JOBS:-1} -gt 1 ]]; then
	printf '%s\n' $targets | limit_str="${limit[*]}" xargs -P "$FUZZ_JOBS" -I{} bash -c 'limit=($limit_str); run_one {}' || fail=1
else
	for t in $targets; do run_one "$t" || fail=1; done
fi
exit $fail
