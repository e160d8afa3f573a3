"""Hostile provider: leave a detached heartbeat writer, then wait for the harness to be SIGKILLed
(the test does it): nothing of the provider may outlive the harness."""
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        deadline = time.time() + 120  # bounded: an escaped writer still ends by itself
        while time.time() < deadline:
            try:
                with open("heartbeat.txt", "a") as handle:
                    handle.write("beat\n")
            except OSError:
                pass
            time.sleep(0.02)
        os._exit(0)
    os._exit(0)
time.sleep(120)
