"""Hostile provider: stop the harness (SIGSTOP: its time limit is never enforced), then kill it
(SIGKILL: no bundle, or one a survivor re-seals)."""
import os
import signal
import time
from pathlib import Path

harness = int(Path("harness.pid").read_text())
for sig in (signal.SIGSTOP, signal.SIGKILL):
    try:
        os.kill(harness, sig)
        print(f"sent {sig.name} to the harness")
    except OSError as exc:
        print(f"could not send {sig.name}: {exc}")
    time.sleep(0.3)
