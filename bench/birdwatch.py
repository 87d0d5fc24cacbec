#!/usr/bin/env python3
"""Watch a BIRD 2 receiver during an announce benchmark (python3 std only).

  birdwatch.py --sock BIRD.ctl --proto NAME --n N --pid-file F [--timeout S]
               [--interval S] [--first A --last A]

Speaks BIRD's control-socket protocol directly (no birdc process per poll),
so polling is cheap for BIRD and for the 2-core machine:

 1. polls `show protocols NAME` until the session is Established and notes the
    wall-clock moment it first saw that (poll-based cross-check only);
 2. polls `show protocols all NAME` ("Routes: X imported", an O(1) counter;
    `show route count` walks the whole table and would slow BIRD down if
    polled every few ms) until X >= N, and *at that moment* reads the
    announcer's utime+stime (/proc/PID/stat) and VmHWM (/proc/PID/status),
    the PID being read from --pid-file;
 3. confirms with one `show route count` that the table holds exactly N
    networks, checks --first/--last are present and prints their attributes;
 4. computes the transfer time from BIRD's own timestamps: the protocol's
    "Since" (last state change = Established) and the newest per-route
    import time in `show route protocol NAME`.  Both are printed by BIRD with
    microsecond precision when the config has
        timeformat protocol "%s.%6f";  timeformat route "%s.%6f";
    BIRD stamps a route with its event-loop time when it imports it, so the
    resolution is one BIRD loop iteration (well under a millisecond here).

CPU time is read with clock_gettime() on the announcer's process CPU clock
(the clockid Linux derives from its PID, as clock_getcpuclockid(3) does):
nanosecond resolution, all threads including ones that already exited.
/proc/PID/stat utime+stime only has 10 ms ticks, too coarse for vipd.

  birdwatch.py cpu PID     prints that process's CPU seconds (for a window start)

Output: shell assignments (KEY=value) on stdout for announce.sh to eval.
Exit status 1 (with a message on stderr) on timeout or wrong counts.
"""

import argparse
import os
import re
import shlex
import socket
import sys
import time
from decimal import Decimal

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Bird:
    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        hello = self.f.readline()
        if not hello.startswith(b"0001 "):
            raise SystemExit(f"birdwatch: unexpected greeting {hello!r}")

    def cmd(self, c: str) -> tuple[int, list[str]]:
        """Send one command; return (final reply code, text lines without codes)."""
        self.s.sendall(c.encode() + b"\n")
        out = []
        while True:
            raw = self.f.readline()
            if not raw:
                raise SystemExit("birdwatch: BIRD closed the control socket")
            line = raw.decode(errors="replace").rstrip("\n")
            if len(line) >= 5 and line[:4].isdigit() and line[4] in " -":
                code = int(line[:4])
                out.append(line[5:])
                if line[4] == " ":
                    return code, out
            else:  # continuation line: leading space
                out.append(line[1:])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user+system, all threads) of a live process.

    Linux: MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) == (~pid << 3) | 2,
    which is what glibc's clock_getcpuclockid(pid) returns."""
    return time.clock_gettime(((~pid) << 3) | 2)


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, utime+stime in clock ticks, VmHWM in KiB) of a live process."""
    cpu = proc_cpu(pid)
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14, 15 of stat(5)
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, ticks, hwm


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "cpu":
        print(f"{proc_cpu(int(sys.argv[2])):.6f}")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--sock", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--pid-file", required=True,
                    help="file holding the announcer's PID (read when all N are in)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds for Established + all N routes (default 120)")
    ap.add_argument("--interval", type=float, default=0.005,
                    help="poll interval in seconds (default 0.005)")
    ap.add_argument("--ready-file",
                    help="created once connected to BIRD and polling")
    ap.add_argument("--first")
    ap.add_argument("--last")
    a = ap.parse_args()

    b = Bird(a.sock)
    deadline = time.monotonic() + a.timeout
    proto_re = re.compile(rf"^{re.escape(a.proto)}\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s*(.*)$")

    def proto_line() -> tuple[str, str, str]:
        code, lines = b.cmd(f"show protocols {a.proto}")
        for ln in lines:
            m = proto_re.match(ln)
            if m:
                return m.group(1), m.group(2), m.group(3).strip()
        raise SystemExit(f"birdwatch: no protocol {a.proto} in BIRD: {lines}")

    def check_alive() -> None:
        """Fail fast if the announcer died (PID known once --pid-file exists)."""
        try:
            with open(a.pid_file) as f:
                p = int(f.read().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        if not os.path.exists(f"/proc/{p}"):
            print(f"birdwatch: announcer pid {p} exited", file=sys.stderr)
            sys.exit(1)

    # 1. Established?
    ready = False
    while True:
        check_alive()
        state, since, info = proto_line()
        if not ready and a.ready_file:
            open(a.ready_file, "w").close()
            ready = True
        if info.startswith("Established"):
            est_poll = time.monotonic()
            break
        if time.monotonic() > deadline:
            print(f"birdwatch: timeout: session not Established ({state} {info})",
                  file=sys.stderr)
            sys.exit(1)
        time.sleep(a.interval)

    # 2. all N imported?
    imp_re = re.compile(r"^\s*Routes:\s+(\d+) imported")
    imported = -1
    polls = 0
    while True:
        _, lines = b.cmd(f"show protocols all {a.proto}")
        polls += 1
        for ln in lines:
            m = imp_re.match(ln)
            if m:
                imported = int(m.group(1))
                break
        if imported >= a.n:
            done_poll = time.monotonic()
            done_wall = time.time()
            break
        check_alive()
        if time.monotonic() > deadline:
            print(f"birdwatch: timeout: BIRD imported {imported} of {a.n} routes",
                  file=sys.stderr)
            sys.exit(1)
        time.sleep(a.interval)
    with open(a.pid_file) as f:
        pid = int(f.read().split()[0])
    try:
        cpu, ticks, hwm = proc_stats(pid)
    except (FileNotFoundError, ProcessLookupError, OSError):
        print(f"birdwatch: announcer pid {pid} is gone", file=sys.stderr)
        sys.exit(1)

    # 3. exact count, first/last present
    _, lines = b.cmd("show route count")
    total = None
    for ln in lines:
        m = re.match(r"^(\d+) of (\d+) routes for (\d+) networks in table master4", ln)
        if m:
            total = int(m.group(3))
    if total != a.n or imported != a.n:
        print(f"birdwatch: BIRD holds {total} networks / {imported} imported, "
              f"expected exactly {a.n}", file=sys.stderr)
        sys.exit(1)
    attrs = {}
    for addr in (a.first, a.last):
        if not addr:
            continue
        code, lines = b.cmd(f"show route {addr}/32 all")
        if code != 0:
            print(f"birdwatch: {addr}/32 not in BIRD: {lines}", file=sys.stderr)
            sys.exit(1)
        for ln in lines:
            m = re.match(r"^\s*BGP\.(origin|as_path|next_hop|local_pref|med):\s*(.*)$", ln)
            if m and addr == a.first:
                attrs[m.group(1)] = m.group(2).strip().replace(" ", "_")

    # 4. BIRD's own timestamps
    state, since, info = proto_line()
    _, lines = b.cmd(f"show route protocol {a.proto}")
    ts_re = re.compile(rf"\[{re.escape(a.proto)} (\d+\.\d+)")
    times = [Decimal(m.group(1)) for ln in lines for m in [ts_re.search(ln)] if m]
    method = "bird-timestamps"
    try:
        est = Decimal(since)
    except ArithmeticError:
        est = None
    poll_transfer = done_poll - est_poll
    if len(times) != a.n or est is None:
        method = "poll"  # fallback: timestamps unusable
        transfer = Decimal(f"{poll_transfer:.6f}")
        first = last = Decimal(0)
        print(f"birdwatch: WARNING: BIRD timestamps unusable ({len(times)} route "
              f"stamps, since={since!r}); using the poll-based time "
              f"(interval {a.interval} s)", file=sys.stderr)
    else:
        first, last = min(times), max(times)
        transfer = max(last - est, Decimal(0))
        # BIRD converts its monotonic loop time to wall-clock time per printed
        # value, so stamps of the same loop iteration differ by a few µs; a
        # route imported in the iteration that also saw the KEEPALIVE can look
        # a few µs older than "Established".  Only a real gap means a flap.
        if first < est - Decimal("0.001"):
            print(f"birdwatch: WARNING: a route ({first}) is older than the "
                  f"session's Established time ({est}): the session flapped?",
                  file=sys.stderr)
    out = {
        "METHOD": method,
        "EST": est if est is not None else "",
        "FIRST_IMPORT": first,
        "LAST_IMPORT": last,
        "TRANSFER": f"{transfer:.6f}",
        "FIRST_ROUTE_AFTER": f"{max(first - est, Decimal(0)) if est is not None else 0:.6f}",
        "BURST": f"{last - first:.6f}",
        "POLL_TRANSFER": f"{poll_transfer:.6f}",
        "POLLS": polls,
        # sanity check of BIRD's stamps against our own clock: how long after
        # BIRD's newest import stamp the poll saw the count reach N (>= 0)
        "SEEN_AFTER_LAST": f"{Decimal(f'{done_wall:.6f}') - last:.6f}" if method != "poll" else "",
        "CPU_END": f"{cpu:.6f}",
        "CPU_TICKS_END": ticks,
        "CLK_TCK": CLK_TCK,
        "HWM_KB": hwm,
        "ROUTES": total,
        "ATTRS": ",".join(f"{k}={v}" for k, v in attrs.items()),
    }
    for k, v in out.items():
        print(f"{k}={shlex.quote(str(v))}")


if __name__ == "__main__":
    main()
