#!/usr/bin/env python3
"""Seeds for the BGP fuzz targets from a capture of real sessions.

    ip netns exec <tor> tcpdump -i any -s 0 -w bgp.pcap 'tcp port 179'
    fuzz/tools/bgp_seeds_from_pcap.py bgp.pcap fuzz/corpus/bgp_wire
    fuzz/tools/bgp_seeds_from_pcap.py --session bgp.pcap fuzz/corpus/bgp_session

Reassembles each direction of each TCP connection (in capture order, duplicates dropped by
sequence number), cuts the byte stream into BGP messages (16 x 0xff, then the length), and
writes every distinct message, and every run of up to eight consecutive messages of a direction,
as one seed file named by its SHA-1. With `--session`, each seed is framed as the bgp_session
target reads its input: flags 0 (a valid peer OPEN first), then the messages as `Received`
steps of at most 192 bytes, a hold-timer step between runs. Handles Linux cooked captures (`-i any`, SLL and SLL2) and
Ethernet, IPv4 and IPv6. Standard library only.
"""
import hashlib
import os
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            return  # the capture was cut mid-packet
        yield linktype, data[off:off + incl]
        off += incl


def ip_payload(linktype, frame):
    if linktype == 113:  # SLL
        proto, rest = struct.unpack(">H", frame[14:16])[0], frame[16:]
    elif linktype == 276:  # SLL2
        proto, rest = struct.unpack(">H", frame[0:2])[0], frame[20:]
    elif linktype == 1:  # Ethernet
        proto, rest = struct.unpack(">H", frame[12:14])[0], frame[14:]
    else:
        return None
    if proto == 0x0800 and len(rest) >= 20 and rest[9] == 6:
        ihl = (rest[0] & 0x0F) * 4
        return rest[12:16], rest[16:20], rest[ihl:]
    if proto == 0x86DD and len(rest) > 40 and rest[6] == 6:
        return rest[8:24], rest[24:40], rest[40:]
    return None


def streams(path):
    flows = {}
    for linktype, frame in packets(path):
        got = ip_payload(linktype, frame)
        if not got:
            continue
        src, dst, tcp = got
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload:
            continue
        key = (src, sport, dst, dport)
        seen = flows.setdefault(key, ({}, []))
        if seq not in seen[0]:
            seen[0][seq] = True
            seen[1].append(payload)
    return [b"".join(parts) for _, parts in flows.values()]


def messages(stream):
    out, i = [], 0
    while i + 19 <= len(stream):
        if stream[i:i + 16] != b"\xff" * 16:
            i += 1
            continue
        length = struct.unpack(">H", stream[i + 16:i + 18])[0]
        if length < 19 or i + length > len(stream):
            break
        out.append(stream[i:i + length])
        i += length
    return out


def session_input(msgs):
    out = bytearray([0])
    for m in msgs:
        for i in range(0, len(m), 192):
            chunk = m[i:i + 192]
            out.append(len(chunk) - 1)
            out += chunk
    out.append(0xC9)
    return bytes(out)


def main():
    args = sys.argv[1:]
    session = args[0] == "--session"
    if session:
        args = args[1:]
    pcap, corpus = args
    os.makedirs(corpus, exist_ok=True)
    seeds = set()
    for stream in streams(pcap):
        msgs = messages(stream)
        for m in msgs:
            seeds.add(session_input([m]) if session else m)
        for start in range(len(msgs)):
            run = msgs[start:start + 8]
            seeds.add(session_input(run) if session else b"".join(run))
    for s in seeds:
        with open(os.path.join(corpus, "pcap-" + hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    print(f"{len(seeds)} seeds from {pcap} into {corpus}")


if __name__ == "__main__":
    main()
