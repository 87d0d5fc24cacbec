#!/usr/bin/env python3
"""Route-set generator for bench/announce.sh (python3 standard library only).

  mrt.py mrt   N FILE [--base A] [--pad P] [--as-path "65000 ..."] [--next-hop A]
  mrt.py vips  N FILE [--base A]
  mrt.py check N [--base A]        (prints first/last address; sanity aid)

`mrt` writes an MRT TABLE_DUMP_V2 file (RFC 6396): one PEER_INDEX_TABLE record,
then one RIB_IPV4_UNICAST record per /32 for N sequential addresses starting at
--base, each with a single RIB entry carrying ORIGIN IGP, AS_PATH and NEXT_HOP.
`gobgp mrt inject global FILE` loads it into gobgpd's global RIB.

Padding: gobgpd/gobgp 3.10 silently lose the last few hundred records of an
injected file (fixed upstream in 4.0).  The file therefore ends with --pad extra
records that REPEAT the last P real prefixes with identical attributes.  A
repeated prefix replaces the same route in gobgpd's RIB, so however many of the
tail records are lost, the RIB holds exactly N routes as long as fewer than P
records are dropped; the caller must still verify with `gobgp global rib
summary` (announce.sh does and fails loudly otherwise).

AS_PATH: default is the empty path.  gobgpd treats injected routes as locally
originated and prepends its own AS (65000) when it advertises them to an eBGP
peer, so an empty path in the file gives AS_PATH [65000] on the wire -- the
same as vipd sends.  `--as-path 65000` would put [65000 65000] on the wire.

`vips` writes the same N addresses, one per line, for vipd's vip_file.
"""

import argparse
import ipaddress
import struct
import sys
import time

MRT_TABLE_DUMP_V2 = 13
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2

ATTR_FLAG_TRANSITIVE = 0x40
ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP = 1, 2, 3
AS_SEQUENCE = 2


def mrt_record(subtype: int, body: bytes, ts: int) -> bytes:
    return struct.pack("!IHHI", ts, MRT_TABLE_DUMP_V2, subtype, len(body)) + body


def attr(code: int, value: bytes) -> bytes:
    assert len(value) < 256
    return struct.pack("!BBB", ATTR_FLAG_TRANSITIVE, code, len(value)) + value


def path_attributes(as_path: list[int], next_hop: str) -> bytes:
    origin = attr(ATTR_ORIGIN, b"\x00")  # IGP
    if as_path:
        # RFC 6396 4.3.4: AS_PATH in TABLE_DUMP_V2 is always 4-octet ASNs.
        seg = struct.pack("!BB", AS_SEQUENCE, len(as_path)) + b"".join(
            struct.pack("!I", a) for a in as_path)
    else:
        seg = b""
    aspath = attr(ATTR_AS_PATH, seg)
    nh = attr(ATTR_NEXT_HOP, ipaddress.IPv4Address(next_hop).packed)
    return origin + aspath + nh


def peer_index_table(ts: int, peer_id: str, peer_ip: str, peer_as: int) -> bytes:
    body = ipaddress.IPv4Address(peer_id).packed  # collector BGP ID
    body += struct.pack("!H", 0)  # view name length (no name)
    body += struct.pack("!H", 1)  # peer count
    # peer type: bit 1 (0x02) = 4-octet AS, bit 0 clear = IPv4 peer address
    body += struct.pack("!B", 0x02)
    body += ipaddress.IPv4Address(peer_id).packed
    body += ipaddress.IPv4Address(peer_ip).packed
    body += struct.pack("!I", peer_as)
    return mrt_record(PEER_INDEX_TABLE, body, ts)


def addresses(n: int, base: str) -> list[ipaddress.IPv4Address]:
    b = ipaddress.IPv4Address(base)
    last = int(b) + n - 1
    if n < 1 or last > int(ipaddress.IPv4Address("255.255.255.255")):
        raise SystemExit(f"mrt.py: cannot make {n} addresses from {base}")
    return [ipaddress.IPv4Address(int(b) + i) for i in range(n)]


def write_mrt(n: int, path: str, base: str, pad: int, as_path: list[int],
              next_hop: str, peer_as: int) -> None:
    ts = int(time.time())
    attrs = path_attributes(as_path, next_hop)
    # RIB entry: peer index 0, originated time, attribute length, attributes
    entry = struct.pack("!HIH", 0, ts, len(attrs)) + attrs
    entry_block = struct.pack("!H", 1) + entry  # entry count = 1
    addrs = addresses(n, base)
    pad = min(pad, n)
    order = addrs + addrs[n - pad:]  # repeat the tail as padding
    with open(path, "wb") as f:
        f.write(peer_index_table(ts, next_hop, next_hop, peer_as))
        for seq, a in enumerate(order):
            body = struct.pack("!IB", seq, 32) + a.packed + entry_block
            f.write(mrt_record(RIB_IPV4_UNICAST, body, ts))
    print(f"mrt.py: wrote {path}: PEER_INDEX_TABLE + {n} RIB_IPV4_UNICAST /32 "
          f"({addrs[0]}..{addrs[-1]}) + {pad} padding records repeating the last "
          f"{pad}; AS_PATH {as_path or '[] (gobgpd prepends its AS)'}, "
          f"NEXT_HOP {next_hop}, ORIGIN IGP", file=sys.stderr)


def write_vips(n: int, path: str, base: str) -> None:
    addrs = addresses(n, base)
    with open(path, "w") as f:
        f.write("".join(f"{a}\n" for a in addrs))
    print(f"mrt.py: wrote {path}: {n} addresses {addrs[0]}..{addrs[-1]}",
          file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["mrt", "vips", "check"])
    ap.add_argument("n", type=int)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--base", default="100.64.0.0",
                    help="first address (default 100.64.0.0)")
    ap.add_argument("--pad", type=int, default=5000,
                    help="records repeating the tail, appended (default 5000, at most N)")
    ap.add_argument("--as-path", default="",
                    help='space separated ASNs for AS_PATH (default: empty)')
    ap.add_argument("--next-hop", default="10.99.0.1")
    ap.add_argument("--peer-as", type=int, default=65000,
                    help="AS of the single PEER_INDEX_TABLE entry")
    a = ap.parse_args()
    if a.mode == "check":
        addrs = addresses(a.n, a.base)
        print(addrs[0], addrs[-1])
        return
    if not a.file:
        ap.error("FILE is required")
    if a.mode == "mrt":
        as_path = [int(x) for x in a.as_path.split()]
        write_mrt(a.n, a.file, a.base, a.pad, as_path, a.next_hop, a.peer_as)
    else:
        write_vips(a.n, a.file, a.base)


if __name__ == "__main__":
    main()
