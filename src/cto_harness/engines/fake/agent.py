"""The built-in fake provider: a stand-alone program (standard library only, started with `-I -S`
for speed) that speaks the same command shape as Case, `run --task <file> --mode unattended`, and
applies the case's deterministic solution to the workspace (its working directory).

Its plan comes from the file named by CTO_FAKE_PLAN: {"overlay", "delete", "script", "commit"}.
It writes a Case-shaped event log to CTO_FAKE_EVENTS. It must not import cto_harness.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

USAGE = "usage: fake-agent run --task <task-file> --mode unattended"


def _now() -> str:
    millis = int(time.time() * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{millis:03d}Z"


class EventWriter:
    def __init__(self, path: str | None) -> None:
        self.handle = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.sequence = 0

    def __call__(self, event: str, **fields: object) -> None:
        if self.handle is None:
            return
        self.sequence += 1
        row = {"event": event, **fields, "ts": _now(), "sequence": self.sequence}
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()


def _parse(argv: list[str]) -> str:
    if len(argv) != 5 or argv[0] != "run" or argv[1] != "--task" or argv[3] != "--mode":
        raise SystemExit(f"Fatal: {USAGE}")
    if argv[4] != "unattended":
        raise SystemExit(f"Fatal: --mode must be unattended, got {argv[4]!r}")
    return argv[2]


def _apply_overlay(overlay: Path, workspace: Path, emit: EventWriter) -> list[str]:
    written = []
    for source in sorted(overlay.rglob("*")):
        if source.is_dir() and not source.is_symlink():
            continue
        rel = source.relative_to(overlay).as_posix()
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        emit("tool_start", phase="implement", tool="write", args=json.dumps({"path": rel}))
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copy2(source, target, follow_symlinks=False)
        emit("tool_end", phase="implement", tool="write", isError=False)
        written.append(rel)
    return written


def main(argv: list[str]) -> int:
    task_path = Path(_parse(argv))
    task = json.loads(task_path.read_text(encoding="utf-8"))
    plan = json.loads(Path(os.environ["CTO_FAKE_PLAN"]).read_text(encoding="utf-8"))
    emit = EventWriter(os.environ.get("CTO_FAKE_EVENTS"))
    workspace = Path.cwd()
    emit("pipeline_start", taskId=task["case_id"], profile="fake")
    emit("phase_start", phase="implement", agent="implementer")
    print(f"[fake] task {task['case_id']}: {task['title']}", flush=True)
    written = _apply_overlay(Path(plan["overlay"]), workspace, emit) if plan.get("overlay") else []
    for rel in plan.get("delete", []):
        target = workspace / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_symlink() or target.exists():
            target.unlink()
    if plan.get("script"):
        # A scripted solution (used by hostile tests): runs with the agent's own privileges.
        runpy.run_path(plan["script"], run_name="__main__")
    if plan.get("commit"):
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "--no-gpg-sign", "-m", "fake solution"], check=True)
    emit("phase_end", phase="implement", agent="implementer", outcome="completed",
         result={"status": "completed", "artifacts": {"filesChanged": written}})
    emit("pipeline_end", outcome="completed")
    print(f"[fake] wrote {len(written)} files; done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
