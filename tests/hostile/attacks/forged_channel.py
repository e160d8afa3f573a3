"""Hostile provider (has read the harness): the solution, when imported, writes a complete
passing run into every pipe the process holds (the harness's result channel among them), then
ends the process."""
from _forged_solution import FORGED_SOLUTION_HEAD  # pasted in by hostile_suite: one file runs

with open("slugkit/text.py", "w") as handle:
    handle.write('import json, os\n' + FORGED_SOLUTION_HEAD + '''
rows = [{"type": "start"}] + [{"type": "test", "id": i, "outcome": "passed"} for i in IDS]
rows.append({"type": "end", "ran": 5, "successful": True, "tampered": []})
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            os.write(int(fd), "".join(json.dumps({"token": "0" * 32, **r}) + "\\n"
                                      for r in rows).encode())
    except OSError:
        pass
os._exit(0)
''')
