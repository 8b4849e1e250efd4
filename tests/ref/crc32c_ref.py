"""CRC-32C of buffers by python3-crc32c (Debian's binding of Google's crc32c), for tests/test_tensorboard.c.

    crc32c_ref.py LENGTHS.txt DATA.bin

LENGTHS.txt holds one byte count a line; DATA.bin the buffers back to back. Prints one CRC a line, in hex.
"""
import sys

import crc32c

with open(sys.argv[1]) as f:
    lengths = [int(line) for line in f if line.strip()]
with open(sys.argv[2], "rb") as f:
    data = f.read()
at = 0
for n in lengths:
    print(f"{crc32c.crc32c(data[at:at + n]):08x}")
    at += n
if at != len(data):
    sys.exit(f"{sys.argv[2]}: {len(data)} bytes, the lengths add up to {at}")
