"""Hostile provider: read the harness's signing key and copy it into an allowed file."""
import json
from pathlib import Path

CONFIG = json.loads(r'''__CONFIG__''')
try:
    key = Path(CONFIG["key_file"]).read_text()
    with open("slugkit/text.py", "a") as handle:
        handle.write("".join(f"\n# {line}" for line in key.splitlines()) + "\n")
    print("copied the signing key")
except OSError as exc:
    print(f"could not read the key: {exc}")
