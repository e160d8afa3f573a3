"""Hostile provider: leave a detached child that rewrites the result after the provider exited,
between the harness's diff and its verification."""
import time

from _detach import detached  # pasted in by hostile_suite: one file runs


def rewrite():
    time.sleep(0.4)
    try:
        with open("slugkit/text.py", "w") as handle:
            handle.write("def slugify(value):\n    return 'raced'\n")
        with open("raced.txt", "w") as handle:
            handle.write("late write")
    except OSError:
        pass


detached(rewrite)
