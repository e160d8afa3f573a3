"""Hostile provider (has read the harness, same process): the solution, when imported, finds the
harness driver's own reporting function in memory, reports every pristine test as passed and
the runner's end, then ends the process. Inherent to running tests in the tested code's process."""
from _forged_solution import FORGED_SOLUTION_HEAD  # pasted in by hostile_suite: one file runs

with open("slugkit/text.py", "w") as handle:
    handle.write('import gc, os\n' + FORGED_SOLUTION_HEAD + '''
for obj in gc.get_objects():
    if callable(obj) and getattr(obj, "__name__", "") == "emit" and getattr(obj, "__closure__", None):
        for ident in IDS:
            obj("test", id=ident, outcome="passed")
        obj("end", ran=5, failures=0, errors=0, unexpected_successes=0, skipped=0,
            successful=True, tampered=[])
        os._exit(0)
''')
