"""Hostile provider: write a 5 GB file (and a sparse one) into the workspace."""
import os

chunk = b"\0" * (1 << 20)
try:
    with open("big.bin", "wb") as handle:
        for _ in range(5 * 1024):
            handle.write(chunk)
except OSError as exc:
    print(f"big.bin stopped: {exc}")
try:
    with open("sparse.bin", "wb") as handle:
        handle.truncate(5 * 1024**3)
except OSError as exc:
    print(f"sparse.bin stopped: {exc}")
print(f"big.bin is {os.path.getsize('big.bin')} bytes")
