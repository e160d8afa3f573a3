"""Hostile provider (has read the harness): swap the harness's own private store and its
verification area for symlinks to a target repository, so that the harness's snapshot (git) and
the verification copy would be written there."""
import json
import os

CONFIG = json.loads(r'''__CONFIG__''')
target = os.path.dirname(CONFIG["target_file"])
events = os.environ.get("CTO_FAKE_EVENTS", "")
private = os.path.dirname(os.path.dirname(events))
for name in ("snapshot.git", "verification"):
    path = os.path.join(private, name)
    try:
        os.rename(path, path + ".moved")
        os.symlink(target, path)
        print(f"swapped {name}")
    except OSError as exc:
        print(f"could not swap {name}: {exc}")
