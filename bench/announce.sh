#!/usr/bin/env bash
# bench/announce.sh -- how fast does an announcer get N /32s into a BIRD 2 peer?
#
# usage: bench/announce.sh [--vipd PATH] [--n "10000 100000"] [--only vipd|gobgpd]
#                           [--runs K]
#
# For every N and every announcer (gobgpd, vipd) the script builds two fresh
# network namespaces  ${BENCH_NSP}node [veth 10.99.0.1/24] <-> ${BENCH_NSP}tor
# [veth 10.99.0.2/24], starts a fresh BIRD 2 receiver in tor (AS 65530,
# `import all; export none`, no kernel protocol), lets the announcer (AS 65000,
# in node) send N sequential /32s from 100.64.0.0, waits until BIRD holds all
# N, and records:
#   transfer s  newest route import time - time the session became Established,
#               both from BIRD's own timestamps (microsecond `timeformat`)
#   CPU s       user+system CPU time of the announcer, all threads (its process
#               CPU clock, clock_getcpuclockid(3); ns resolution):
#               gobgpd: from just before `gobgp neighbor add` (routes already
#               loaded from an MRT file) until BIRD holds all N;
#               vipd: its whole life until BIRD holds all N (includes start-up
#               and reading the address file: conservative)
#   peak RSS    VmHWM of the announcer at that moment
# and prints a Markdown table plus vipd/gobgpd ratios.  See bench/README.md.
#
# Env knobs: BENCH_NSP (netns prefix, default "bench-"), BENCH_TIMEOUT (seconds
# for Established + all routes, default 120), BENCH_POLL (seconds between
# polls of BIRD's route counter, default 0.005), KEEP=1 (keep the work dir with
# logs and configs), MRT_PAD (padding records, default 5000).
set -Eeuo pipefail
trap 'echo "announce.sh: command failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

usage() {
	sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	cat <<'EOF'
  --vipd PATH   vipd binary (default: target/release/vipd in the repo root)
  --n LIST      space separated route counts (default "10000 100000")
  --only WHO    run only vipd or only gobgpd (no ratio rows then)
  --runs K      repeat every measurement K times (default 1, announcers
                interleaved); the table then shows medians
Runs as root; needs bird/birdc (BIRD 2), gobgpd/gobgp, iproute2, python3.
EOF
}

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(dirname "$HERE")
VIPD=$ROOT/target/release/vipd
N_LIST="10000 100000"
ONLY=""
RUNS=1
ARGS_ORIG=("$@")

while (($#)); do
	case $1 in
	--vipd) VIPD=${2:?--vipd needs a path}; shift 2 ;;
	--vipd=*) VIPD=${1#*=}; shift ;;
	--n) N_LIST=${2:?--n needs a list}; shift 2 ;;
	--n=*) N_LIST=${1#*=}; shift ;;
	--only) ONLY=${2:?--only needs vipd or gobgpd}; shift 2 ;;
	--only=*) ONLY=${1#*=}; shift ;;
	--runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "announce.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

case $ONLY in
"") WHO_LIST=(gobgpd vipd) ;;
vipd | gobgpd) WHO_LIST=("$ONLY") ;;
*) echo "announce.sh: --only takes vipd or gobgpd, not '$ONLY'" >&2; exit 2 ;;
esac
read -r -a NS <<<"$N_LIST"
((${#NS[@]})) || { echo "announce.sh: --n list is empty" >&2; exit 2; }
for n in "${NS[@]}"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] && ((n <= 4000000)) ||
		{ echo "announce.sh: bad route count '$n' (1..4000000)" >&2; exit 2; }
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "announce.sh: --runs takes a positive integer, not '$RUNS'" >&2; exit 2; }

if [[ $(id -u) -ne 0 ]]; then
	echo "announce.sh: must run as root (it creates network namespaces and starts bird/gobgpd/vipd inside them); try: sudo $0 ${ARGS_ORIG[*]}" >&2
	exit 1
fi

NSP=${BENCH_NSP:-bench-}
NODE=${NSP}node
TOR=${NSP}tor
TIMEOUT=${BENCH_TIMEOUT:-120}
POLL=${BENCH_POLL:-0.005}
KEEP=${KEEP:-0}
STATE=/run/vipd-bench/${NSP}
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3 # the system one; std lib only
WORK=""
BIRD_SOCK=""
WATCH_PID=""

log() { printf '[announce %s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "missing command '$c'"
	done
}
need ip bird birdc "$PY" awk
for who in "${WHO_LIST[@]}"; do
	case $who in
	gobgpd) need gobgpd gobgp ;;
	vipd)
		case $VIPD in /*) ;; *) VIPD=$PWD/$VIPD ;; esac
		[[ -x $VIPD ]] || die "vipd binary not found or not executable: $VIPD (build it with 'cargo build --release', pass --vipd PATH, or use --only gobgpd)"
		;;
	esac
done

# ---------------------------------------------------------------- processes ---
# Every process we start is recorded as "PID COMM" in $STATE/LABEL.pid and only
# ever signalled after checking /proc/PID/comm still is COMM (no pkill/killall).
pid_alive() { [[ -d /proc/$1 && $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]; }

# start_in NS LABEL COMM CMD...   (`ip netns exec` exec()s: $! is CMD's PID)
start_in() {
	local ns=$1 label=$2 comm=$3
	shift 3
	ip netns exec "$ns" "$@" >"$WORK/$label.out" 2>&1 </dev/null &
	echo "$! $comm" >"$STATE/$label.pid"
	log "started $label (pid $!) in $ns: $*"
}

label_pid() { local pid _c; read -r pid _c <"$STATE/$1.pid"; echo "$pid"; }

stop_label() {
	local f=$STATE/$1.pid pid comm
	[[ -f $f ]] || return 0
	read -r pid comm <"$f"
	if pid_alive "$pid" "$comm"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do pid_alive "$pid" "$comm" || break; sleep 0.1; done
		if pid_alive "$pid" "$comm"; then
			log "pid $pid ($comm) ignored TERM, sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	rm -f "$f"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

topo_down() {
	local f ns pid
	for f in "$STATE"/*.pid; do
		[[ -e $f ]] || continue
		stop_label "$(basename "$f" .pid)"
	done
	[[ -f $STATE/netns ]] || return 0
	while read -r ns; do
		[[ -n $ns ]] && ns_exists "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "stray pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) in $ns, killing it"
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done < <(sort -u "$STATE/netns")
	rm -f "$STATE/netns"
}

topo_up() {
	local ns
	for ns in "$NODE" "$TOR"; do
		ns_exists "$ns" && die "netns $ns exists and is not ours (another run? set BENCH_NSP=)"
		echo "$ns" >>"$STATE/netns"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	# the veth pair is created inside the namespaces, never in the root netns
	ip -n "$NODE" link add veth-tor type veth peer name veth-node netns "$TOR"
	ip -n "$NODE" addr add 10.99.0.1/24 dev veth-tor
	ip -n "$TOR" addr add 10.99.0.2/24 dev veth-node
	ip -n "$NODE" link set veth-tor up
	ip -n "$TOR" link set veth-node up
	ip netns exec "$TOR" ping -c1 -W2 10.99.0.1 >/dev/null || die "no IPv4 between $NODE and $TOR"
}

stop_watch() { # our own un-reaped child: its PID cannot have been recycled
	[[ -n $WATCH_PID ]] || return 0
	kill -TERM "$WATCH_PID" 2>/dev/null || true
	wait "$WATCH_PID" 2>/dev/null || true
	WATCH_PID=""
}

on_exit() {
	local rc=$?
	trap - EXIT
	stop_watch
	if [[ $rc -ne 0 && -n $WORK && -d $WORK ]]; then
		log "---- failure: tails of the logs in $WORK ----"
		local f
		for f in "$WORK"/*.out "$WORK"/*.log; do
			[[ -f $f ]] || continue
			echo "==> $f <==" >&2
			tail -n 20 "$f" >&2 || true
		done
	fi
	topo_down
	rm -rf "$STATE"
	if [[ -n $WORK && -d $WORK ]]; then
		if [[ $KEEP == 1 ]]; then log "KEEP=1: logs and configs kept in $WORK"; else rm -rf "$WORK"; fi
	fi
	exit "$rc"
}

# a previous run of this script (same prefix) killed hard: clean up after it
if [[ -d $STATE ]]; then
	log "cleaning up what a previous run left in $STATE"
	topo_down
	if [[ -f $STATE/workdir ]]; then
		old=$(<"$STATE/workdir")
		[[ $old == /tmp/vipd-bench.* && $KEEP != 1 ]] && rm -rf "$old"
	fi
	rm -rf "$STATE"
fi
mkdir -p "$STATE"
trap on_exit EXIT
trap 'exit 130' INT TERM
WORK=$(mktemp -d /tmp/vipd-bench.XXXXXX)
echo "$WORK" >"$STATE/workdir"
BIRD_SOCK=$WORK/bird.ctl

# ------------------------------------------------------------------- BIRD ---
write_bird_conf() {
	cat >"$WORK/bird.conf" <<EOF
# receiver for bench/announce.sh: no kernel protocol, nothing exported
log "$WORK/bird.log" all;
router id 10.99.0.2;
# microsecond timestamps: "since" of a protocol and import time of each route
timeformat protocol "%s.%6f";
timeformat route "%s.%6f";
timeformat base "%s.%6f";
timeformat log "%F %T.%6f";
protocol device { scan time 60; }
protocol bgp announcer {
  local 10.99.0.2 as 65530;
  neighbor 10.99.0.1 as 65000;
  # BIRD connects too, 1 s after start, so the session does not wait for the
  # announcer's connect-retry timer (gobgpd: 5-10 s with jitter)
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
EOF
	bird -p -c "$WORK/bird.conf" || die "bird -p rejected $WORK/bird.conf"
}

start_bird() {
	rm -f "$BIRD_SOCK"
	start_in "$TOR" bird bird bird -f -c "$WORK/bird.conf" -s "$BIRD_SOCK" -P "$WORK/bird.pid"
	local i
	for i in $(seq 200); do
		birdc -s "$BIRD_SOCK" show status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	die "BIRD control socket did not answer within 10 s"
}

# birdwatch LABEL N : start the BIRD poller in the background (see birdwatch.py)
start_watch() {
	local label=$1 n=$2 first last
	rm -f "$WORK/watch.ready"
	read -r first last < <("$PY" "$HERE/mrt.py" check "$n")
	"$PY" "$HERE/birdwatch.py" --sock "$BIRD_SOCK" --proto announcer --n "$n" \
		--pid-file "$STATE/$label.pid" --timeout "$TIMEOUT" --interval "$POLL" \
		--first "$first" --last "$last" --ready-file "$WORK/watch.ready" \
		>"$WORK/watch.env" 2>"$WORK/watch.err" &
	WATCH_PID=$!
	# start the announcer only once the poller is connected and polling
	local i
	for i in $(seq 200); do
		[[ -e $WORK/watch.ready ]] && return 0
		kill -0 "$WATCH_PID" 2>/dev/null || break
		sleep 0.025
	done
	cat "$WORK/watch.err" >&2
	die "birdwatch.py did not start polling BIRD"
}

finish_watch() {
	local rc=0
	wait "$WATCH_PID" || rc=$?
	WATCH_PID=""
	[[ -s $WORK/watch.err ]] && sed 's/^/  /' "$WORK/watch.err" >&2
	[[ $rc -eq 0 ]] || die "BIRD did not get all routes (see above)"
	# shellcheck disable=SC1091
	source "$WORK/watch.env"
}

cpu_ticks() { # PID -> utime+stime in clock ticks
	local st
	st=$(<"/proc/$1/stat")
	st=${st##*) }
	awk '{print $12 + $13}' <<<"$st"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }

# --------------------------------------------------------------- results ---
# per "N:who": space separated values, one per run
declare -A R_TRANSFER R_CPU R_RSS R_METHOD
DETAILS=()
RUN=1

record() { # N WHO CPU_SECONDS CPU_TICKS EXTRA
	local n=$1 who=$2 secs=$3 ticks=$4 extra=$5 cpu rss t tcpu
	cpu=$(awk -v t="$secs" 'BEGIN{printf "%.3f", t}')
	tcpu=$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t/hz}')
	rss=$(awk -v k="$HWM_KB" 'BEGIN{printf "%.1f", k/1024}')
	t=$(awk -v t="$TRANSFER" 'BEGIN{printf "%.3f", t}')
	R_TRANSFER[$n:$who]+=" $t"
	R_CPU[$n:$who]+=" $cpu"
	R_RSS[$n:$who]+=" $rss"
	R_METHOD[$n:$who]+=" $METHOD"
	local timing
	if [[ $METHOD == poll ]]; then
		timing="BIRD timestamps UNUSABLE, poll-based: Established seen to all $n seen ${POLL_TRANSFER} s ($POLLS polls every ${POLL} s; resolution about one poll interval)"
	else
		timing="Established $EST (BIRD); first route +${FIRST_ROUTE_AFTER} s, last +${TRANSFER} s (burst ${BURST} s); poll cross-check ${POLL_TRANSFER} s ($POLLS polls every ${POLL} s; all $n seen ${SEEN_AFTER_LAST} s after the newest stamp)"
	fi
	DETAILS+=("- N=$n $who run $RUN/$RUNS: $timing; CPU ${cpu} s (/proc stat ticks: ${tcpu} s); VmHWM ${rss} MiB; $extra; route ${ATTRS}")
	log "N=$n $who run $RUN/$RUNS: transfer $t s, CPU $cpu s, peak RSS $rss MiB"
}

# ----------------------------------------------------------------- gobgpd ---
run_gobgpd() {
	local n=$1 mrt=$WORK/routes-$n.mrt t0 t1 got="" prev="" stable=0 pid cpu0 ticks0
	[[ -f $mrt ]] || "$PY" "$HERE/mrt.py" mrt "$n" "$mrt" --pad "${MRT_PAD:-5000}"
	cat >"$WORK/gobgpd.toml" <<EOF
[global.config]
  as = 65000
  router-id = "10.99.0.1"
EOF
	start_in "$NODE" gobgpd gobgpd gobgpd -f "$WORK/gobgpd.toml" -p --api-hosts 127.0.0.1:50051 --pprof-disable
	pid=$(label_pid gobgpd)
	local i
	for i in $(seq 100); do
		ip netns exec "$NODE" gobgp global >/dev/null 2>&1 && break
		((i < 100)) || die "gobgpd API did not answer within 10 s"
		sleep 0.1
	done
	# load the routes before any session exists
	t0=$(date +%s.%N)
	ip netns exec "$NODE" gobgp mrt inject global "$mrt" || die "gobgp mrt inject failed"
	# gobgpd 3.10 drops the file's last few hundred records and applies the
	# rest asynchronously: wait for the count to settle, demand exactly N
	for i in $(seq 600); do
		got=$(ip netns exec "$NODE" gobgp global rib summary -a ipv4 | sed -n 's/.*Destination: \([0-9]*\),.*/\1/p')
		[[ $got == "$n" ]] && break
		if [[ $got == "$prev" ]]; then stable=$((stable + 1)); else stable=0; fi
		((stable < 30)) || break # unchanged for 3 s
		prev=$got
		sleep 0.1
	done
	t1=$(date +%s.%N)
	[[ $got == "$n" ]] || die "gobgpd holds ${got:-?} routes after 'gobgp mrt inject', expected exactly $n (3.10 drops the tail of the file; raise MRT_PAD)"
	log "gobgpd loaded $got routes from the MRT file in $(secs "$t0" "$t1") s"
	# let it finish digesting the load (GC etc.): wait until its CPU time
	# stands still for 0.5 s, so the measured window holds the transfer alone
	local a b idle=0
	a=$(cpu_ticks "$pid")
	for i in $(seq 80); do
		sleep 0.25
		b=$(cpu_ticks "$pid")
		if ((b == a)); then idle=$((idle + 1)); else idle=0; fi
		a=$b
		((idle < 2)) || break
	done
	((idle >= 2)) || log "note: gobgpd still used CPU 20 s after the load; measuring anyway"
	start_bird
	start_watch gobgpd "$n"
	ticks0=$(cpu_ticks "$pid")
	cpu0=$("$PY" "$HERE/birdwatch.py" cpu "$pid")
	ip netns exec "$NODE" gobgp neighbor add 10.99.0.2 as 65530
	finish_watch
	record "$n" gobgpd "$(awk -v a="$cpu0" -v b="$CPU_END" 'BEGIN{printf "%.6f", b-a}')" $((CPU_TICKS_END - ticks0)) "MRT load $(secs "$t0" "$t1") s (not measured); gobgpd CPU before the neighbor add ${cpu0} s (not counted)"
}

# ------------------------------------------------------------------- vipd ---
run_vipd() {
	local n=$1 vips=$WORK/vips-$n.txt comm
	[[ -f $vips ]] || "$PY" "$HERE/mrt.py" vips "$n" "$vips"
	comm=$(basename "$VIPD")
	comm=${comm:0:15}
	start_bird
	start_watch vipd "$n"
	start_in "$NODE" vipd "$comm" env bgp_enable=true bgp_as=65000 bgp_routerid=10.99.0.1 \
		bgp_peers=10.99.0.2:65530::false vip_file="$vips" "$VIPD" manager
	finish_watch
	record "$n" vipd "$CPU_END" "$CPU_TICKS_END" "CPU and RSS over vipd's whole life (start-up and reading the $n-line vip_file included)"
}

# ------------------------------------------------------------------- main ---
T_START=$(date +%s.%N)
log "work dir $WORK; namespaces $NODE, $TOR; N: ${NS[*]}; announcers: ${WHO_LIST[*]}"
for n in "${NS[@]}"; do
	for RUN in $(seq "$RUNS"); do
		for who in "${WHO_LIST[@]}"; do
			log "===== N=$n announcer=$who run $RUN/$RUNS ====="
			topo_up
			write_bird_conf
			"run_$who" "$n"
			stop_label "$who"
			stop_label bird
			topo_down
		done
	done
done

# ----------------------------------------------------------------- report ---
# median FORMAT VALUES...
median() {
	local fmt=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v f="$fmt" '{a[NR]=$1} END{m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf f, m}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 == 0) print "n/a"; else printf "%.3g", a/b }'; }
vipd_desc="not run"
if [[ " ${WHO_LIST[*]} " == *" vipd "* ]]; then
	vipd_desc="$VIPD ($(stat -c %s "$VIPD") bytes, built $(date -r "$VIPD" '+%F %T'))"
fi
echo
echo "Command: bench/announce.sh${ARGS_ORIG[*]:+ ${ARGS_ORIG[*]}}"
echo "Date: $(date '+%F %T %Z'); host: $(uname -sr), $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))"
echo "Repo: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
echo "Receiver: $(bird --version 2>&1 | head -1), import all, no kernel protocol; announcers: $(gobgpd --version 2>/dev/null | head -1); vipd: $vipd_desc"
echo
for d in "${DETAILS[@]}"; do echo "$d"; done
echo
((RUNS == 1)) || echo "Each figure is the median of $RUNS runs (announcers interleaved); every run is listed above."
echo "| N | announcer | transfer s | CPU s | peak RSS MiB |"
echo "|---:|---|---:|---:|---:|"
poll_note=0
declare -A M_T M_C M_R
for n in "${NS[@]}"; do
	for who in "${WHO_LIST[@]}"; do
		# shellcheck disable=SC2086 # word splitting of the per-run lists is wanted
		{
			M_T[$n:$who]=$(median %.3f ${R_TRANSFER[$n:$who]})
			M_C[$n:$who]=$(median %.3f ${R_CPU[$n:$who]})
			M_R[$n:$who]=$(median %.1f ${R_RSS[$n:$who]})
		}
		t=${M_T[$n:$who]}
		[[ ${R_METHOD[$n:$who]} == *poll* ]] && { t="$t (poll)"; poll_note=1; }
		echo "| $n | $who | $t | ${M_C[$n:$who]} | ${M_R[$n:$who]} |"
	done
	if ((${#WHO_LIST[@]} == 2)); then
		echo "| $n | vipd/gobgpd | $(ratio "${M_T[$n:vipd]}" "${M_T[$n:gobgpd]}") | $(ratio "${M_C[$n:vipd]}" "${M_C[$n:gobgpd]}") | $(ratio "${M_R[$n:vipd]}" "${M_R[$n:gobgpd]}") |"
	fi
done
echo
echo "transfer s: BIRD's import time of its newest route minus the time BIRD's session went Established (BIRD timestamps, µs format)."
echo "CPU s: the announcer's process CPU clock (user+system, all threads, ns resolution) — gobgpd from just before 'gobgp neighbor add' (routes preloaded via MRT, gobgpd idle again), vipd over its whole life; both until BIRD held all N. peak RSS: VmHWM."
((poll_note == 0)) || echo "(poll): BIRD's timestamps were unusable for that run; the time is from polling BIRD every ${POLL} s instead."
log "done in $(secs "$T_START" "$(date +%s.%N)") s"
