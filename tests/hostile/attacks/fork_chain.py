"""Hostile provider: a fork-and-exit chain that keeps writing after the provider exits. Every
generation forks the next and exits at once, as fast as fork allows: a member lives a fraction of a
millisecond, shorter than one scan of /proc. It writes through a descriptor opened before the run
ended (taking the file back does not close it), every 100 generations. Bounded: an escaped chain
still ends by itself."""
import contextlib
import os
import time

deadline = time.time() + 30
if os.fork() == 0:
    os.setsid()
    out = os.open("chain.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    generation = 0
    while time.time() < deadline:
        if os.fork() != 0:
            os._exit(0)
        generation += 1
        if generation % 100 == 0:
            with contextlib.suppress(OSError):
                os.write(out, b"x")
    os._exit(0)
time.sleep(0.3)
