"""Hostile provider: one 60 MiB file (under the per-file limit) hard-linked 40 times in the
workspace, and the event log the harness copies into the bundle made one more link to it."""
import os

with open("big.bin", "wb") as handle:
    chunk = b"\x5a" * (1 << 20)
    for _ in range(60):
        handle.write(chunk)
for i in range(40):
    os.link("big.bin", f"big-{i:02d}.bin")
events = os.environ.get("CTO_FAKE_EVENTS")
if events:
    os.unlink(events)
    os.link("big.bin", events)
