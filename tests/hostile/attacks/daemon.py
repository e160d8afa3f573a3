"""Hostile provider: fork a detached daemon (double fork, setsid) that outlives the provider."""
import time

from _detach import detached  # pasted in by hostile_suite: one file runs


def linger():
    time.sleep(1.0)  # quiet while the provider runs: only a survivor writes
    for _ in range(600):
        time.sleep(0.1)
        try:
            with open("daemon-was-here.txt", "a") as handle:
                handle.write("x")
        except OSError:
            pass


detached(linger)
time.sleep(0.2)
