"""Hostile provider: a fork-and-exit chain (every generation forks and exits at once, so no pid
lives long enough to be found) that keeps writing after the provider exits."""
import os
import time

deadline = time.time() + 30
if os.fork() == 0:
    os.setsid()
    while time.time() < deadline:
        if os.fork() != 0:
            os._exit(0)
        try:
            with open("chain.txt", "a") as handle:
                handle.write("x")
        except OSError:
            pass
        time.sleep(0.005)
    os._exit(0)
time.sleep(0.3)
