"""Hostile provider: fork a detached daemon (double fork, setsid) that outlives the provider."""
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1.0)  # quiet while the provider runs: only a survivor writes
        for _ in range(600):
            time.sleep(0.1)
            try:
                with open("daemon-was-here.txt", "a") as handle:
                    handle.write("x")
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
time.sleep(0.2)
