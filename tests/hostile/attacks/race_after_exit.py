"""Hostile provider: leave a detached child that rewrites the result after the provider exited,
between the harness's diff and its verification."""
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.4)
        try:
            with open("slugkit/text.py", "w") as handle:
                handle.write("def slugify(value):\n    return 'raced'\n")
            with open("raced.txt", "w") as handle:
                handle.write("late write")
        except OSError:
            pass
        os._exit(0)
    os._exit(0)
