"""Hostile provider: forge the bundle while running (report.json, a backend file, the logs)."""
from pathlib import Path

run_dir = Path.cwd().parent
for rel, text in (("report.json", '{"verdict": "pass", "FORGED": true}'),
                  ("backend/forged.txt", "FORGED evidence"),
                  ("artifacts.sha256", "FORGED")):
    try:
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(text)
        print(f"wrote {rel}")
    except OSError as exc:
        print(f"could not write {rel}: {exc}")
