#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into OUT/<target>/, from Protocol/vectors/ (hex text -> bytes) plus a
few structured journal and payload seeds built here. Nothing binary is committed: run this at fuzz time.

usage: make_seeds.py OUT_DIR
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "Protocol", "vectors")


def read_hex(path):
    """Hex text: '#' lines are comments, the rest is hex bytes separated by white space."""
    out = bytearray()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out += bytes.fromhex("".join(line.split()))
    return bytes(out)


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v)


def engine_records():
    """One payload of every record type, from the golden payload vectors the engine's tests check."""
    pdir = os.path.join(VECTORS, "journal", "payloads")
    records = {}
    for name in sorted(os.listdir(pdir)):
        if name.startswith("type") and name.endswith(".hex"):
            records[int(name[4:6])] = read_hex(os.path.join(pdir, name))
    return records


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]

    # fuzz-frames: every vector frame, and all request frames back to back (a pipelined stream).
    # fuzz-messages: opcode byte + body of every vector.
    stream = b""
    for name in sorted(os.listdir(VECTORS)):
        if not name.endswith(".hex"):
            continue
        frame = read_hex(os.path.join(VECTORS, name))
        base = name[:-4]
        write(out, "fuzz-frames", base, frame)
        if len(frame) >= 16:
            write(out, "fuzz-messages", base, frame[7:8] + frame[16:])
        if ".request" in name:
            stream += frame
    write(out, "fuzz-frames", "all-requests-pipelined", stream)

    # fuzz-journal (see Fuzz/Sources/fuzz-journal/Fuzz.swift for the modes).
    jdir = os.path.join(VECTORS, "journal")
    segment = read_hex(os.path.join(jdir, "segment-wal-0000000000000001.hex"))
    record = read_hex(os.path.join(jdir, "record-seq1-type1-hello.hex"))
    snapshot = read_hex(os.path.join(jdir, "snapshot-snap-0000000000000002.hex"))
    write(out, "fuzz-journal", "tail-segment-records", b"\x00" + segment[20:])
    write(out, "fuzz-journal", "tail-one-record", b"\x00" + record)
    write(out, "fuzz-journal", "tail-torn", b"\x00" + segment[20:-3])
    write(out, "fuzz-journal", "tail-small-max-record", b"\x10" + segment[20:])

    def entry(kind, seq, data):
        return bytes([kind, seq]) + struct.pack("<H", len(data)) + data
    write(out, "fuzz-journal", "files-segment-and-snapshot", b"\x02" + entry(1, 1, segment) + entry(3, 2, snapshot))
    write(out, "fuzz-journal", "files-snapshot-then-empty-segment",
          b"\x02" + entry(3, 2, snapshot) + entry(0, 3, b"") + entry(1, 1, segment) + entry(4, 3, b"junk"))
    write(out, "fuzz-journal", "files-new-directory", b"\x02")
    # ops programs: 0 = record(type, len, payload), 1 = rotate, 6 = snapshot(back, len, payload), 5 = cut, 9 = zeros
    write(out, "fuzz-journal", "ops-records-rotate-snapshot",
          b"\x01" + b"\x00\x01\x03abc" + b"\x00\x02\x00" + b"\x01" + b"\x00\x05\x02hi" + b"\x06\x00\x05state" + b"\x00\x06\x01x")
    write(out, "fuzz-journal", "ops-torn-tail", b"\x01" + b"\x00\x01\x03abc" + b"\x00\x02\x04wxyz" + b"\x05\x02" + b"\x09\x10")
    write(out, "fuzz-journal", "ops-corrupt-middle", b"\x01" + b"\x00\x01\x03abc" + b"\x00\x02\x04wxyz" + b"\x04\x00\x16\x00\x40" + b"\x00\x03\x01z")

    # fuzz-payloads: one record payload of every type (selector = type), and a snapshot (selector 0x80).
    records = engine_records()
    for t, payload in records.items():
        write(out, "fuzz-payloads", f"record-type{t}", bytes([t]) + payload)
    snap = b""
    for t in (1, 8, 2, 3, 9, 7):
        snap += u8(t) + u32(len(records[t])) + records[t]
    write(out, "fuzz-payloads", "snapshot", b"\x80" + snap)


if __name__ == "__main__":
    main()
