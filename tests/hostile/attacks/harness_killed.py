"""Hostile provider: leave a detached heartbeat writer, then wait for the harness to be SIGKILLed
(the test does it): nothing of the provider may outlive the harness."""
import time

from _detach import detached  # pasted in by hostile_suite: one file runs


def heartbeat():
    deadline = time.time() + 120  # bounded: an escaped writer still ends by itself
    while time.time() < deadline:
        try:
            with open("heartbeat.txt", "a") as handle:
                handle.write("beat\n")
        except OSError:
            pass
        time.sleep(0.02)


detached(heartbeat)
time.sleep(120)
