"""Hostile provider: write outside the workspace (a target repository and the harness's home)."""
import json
from pathlib import Path

CONFIG = json.loads(r'''__CONFIG__''')
for path in (CONFIG["target_file"], CONFIG["home_file"], CONFIG["case_file"]):
    try:
        with open(path, "a") as handle:
            handle.write("\n# pwned by a hostile provider\n")
        print(f"wrote {path}")
    except OSError as exc:
        print(f"could not write {path}: {exc}")
Path("slugkit/text.py").touch()
