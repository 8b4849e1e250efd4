"""Checks a TensorBoard event file that leash wrote against the metrics it came from (tests/test_tensorboard.c).

    tensorboard_check.py EVENT_DIR METRICS.jsonl

EVENT_DIR must hold exactly one file named events.out.tfevents.<10-digit unix time>.<host>[.N]. Its records
are read twice, independently:
  1. the TFRecord framing by hand: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the
     data, every CRC checked with python3-crc32c (Debian's binding of Google's crc32c);
  2. TensorBoard's own reader, EventAccumulator (PyPI tensorboard), keeping every scalar (no sampling).
Every numeric key of every METRICS line except "step" must be a scalar of that tag at that step whose value
is the number rounded to float32 (TensorBoard's simple_value), exactly; no other scalar may be there, and the
first event must carry file_version "brain.Event:2". Prints the counts and the worst difference; exit 1 on
any mismatch.
"""
import json
import math
import os
import re
import struct
import sys

import crc32c
import numpy
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2


def masked(data):
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        buf = f.read()
    at = 0
    while at < len(buf):
        if len(buf) - at < 12:
            sys.exit(f"{path}: {len(buf) - at} stray bytes at offset {at} (a truncated record header)")
        (n,) = struct.unpack_from("<Q", buf, at)
        (hcrc,) = struct.unpack_from("<I", buf, at + 8)
        if hcrc != masked(buf[at:at + 8]):
            sys.exit(f"{path}: record at offset {at}: length CRC {hcrc:#x}, expected {masked(buf[at:at + 8]):#x}")
        data = buf[at + 12:at + 12 + n]
        (dcrc,) = struct.unpack_from("<I", buf, at + 12 + n)
        if dcrc != masked(data):
            sys.exit(f"{path}: record at offset {at}: data CRC {dcrc:#x}, expected {masked(data):#x}")
        yield data
        at += 16 + n


def f32(x):
    """x rounded to float32 as C's (float) cast rounds it (beyond the largest float32: infinity)."""
    with numpy.errstate(over="ignore"):
        return float(numpy.float32(x))


def main():
    event_dir, metrics = sys.argv[1], sys.argv[2]
    files = sorted(os.listdir(event_dir))
    events = [f for f in files if "tfevents" in f]
    if len(events) != 1:
        sys.exit(f"{event_dir}: {len(events)} event files ({events}); expected exactly one")
    if not re.fullmatch(r"events\.out\.tfevents\.\d{10}\.[^/]+", events[0]):
        sys.exit(f"{events[0]}: not TensorFlow's name events.out.tfevents.<unix time>.<host>")
    path = os.path.join(event_dir, events[0])

    raw = [event_pb2.Event.FromString(r) for r in records(path)]
    if not raw or raw[0].WhichOneof("what") != "file_version" or raw[0].file_version != "brain.Event:2":
        sys.exit(f"{path}: the first event is not file_version 'brain.Event:2': {raw[:1]}")

    expected = {}  # (tag, step) -> float32 value
    with open(metrics) as f:
        for line in f:
            if not line.strip():
                continue
            o = json.loads(line)
            for k, v in o.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    expected[(k, int(o["step"]))] = f32(float(v))

    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    if acc.file_version != 2.0:
        sys.exit(f"{path}: EventAccumulator read file_version {acc.file_version}, expected 2.0")
    got = {}
    for tag in acc.Tags()["scalars"]:
        for ev in acc.Scalars(tag):
            if (tag, ev.step) in got:
                sys.exit(f"{path}: scalar {tag!r} at step {ev.step} appears twice")
            if not math.isfinite(ev.wall_time) or ev.wall_time <= 0:
                sys.exit(f"{path}: scalar {tag!r} at step {ev.step} has wall time {ev.wall_time}")
            got[(tag, ev.step)] = ev.value

    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    worst, bad = 0.0, []
    for key in sorted(set(expected) & set(got)):
        a, b = got[key], expected[key]
        same = (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b))
        if not same:
            bad.append((key, a, b))
        if math.isfinite(a) and math.isfinite(b):
            worst = max(worst, abs(a - b))
    tags = {t for t, _ in expected}
    steps = {s for _, s in expected}
    print(f"tensorboard_check: {len(got)} scalars read by EventAccumulator ({len(raw)} records, CRCs checked), "
          f"{len(expected)} expected over {len(tags)} tags and {len(steps)} steps; {len(missing)} missing, "
          f"{len(extra)} extra, {len(bad)} differing values, worst |difference| {worst:g}")
    for key in missing[:5]:
        print(f"  missing: {key}")
    for key in extra[:5]:
        print(f"  extra: {key} = {got[key]}")
    for key, a, b in bad[:5]:
        print(f"  differs: {key}: read {a!r}, expected {b!r}")
    sys.exit(1 if missing or extra or bad else 0)


if __name__ == "__main__":
    main()
