"""Hostile provider: flood stdout with 1 GiB."""
import sys

chunk = b"flood " * (1 << 17)  # 768 KiB
written = 0
while written < (1 << 30):
    sys.stdout.buffer.write(chunk)
    written += len(chunk)
sys.stdout.flush()
