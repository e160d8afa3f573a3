"""A quick stand-in `ca` as a script (our own code, speaking Case's observed CLI contract).

The adapter validator needs admitted providers that start in milliseconds, not 100 MB Bun
builds, so it writes this script with a scenario and a solution baked in: the bytes admitted fix
the behaviour, as with a compiled provider. Scenarios: `normal` (applies the solution, commits
through a detached shell, writes a Case-shaped event log, exits 0), `hang` (a detached child and
the parent both sleep), `failed` (the pipeline fails, exit 0, no change), `no-markers` (help
without Case's markers).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

_TEMPLATE = r'''#!/usr/bin/env -S python3 -I
# cto-harness script stand-in for WorkOS Case `ca` (scenario: __SCENARIO__). Not Case's code.
import json, os, subprocess, sys, time, uuid
from pathlib import Path

SCENARIO = __SCENARIO_LITERAL__
SOLUTION = __SOLUTION__
HELP = """Usage: ca <command> [options]

Commands:
  run            Run the pipeline for a task
  watch          Watch a running pipeline
  create         Create a task
  session        Session helpers
  status         Show or set task status
  mark-tested    Record test evidence
  mark-manual-tested  Record manual test evidence
  mark-reviewed  Record review evidence
  upload         Upload artifacts
  snapshot       Snapshot the repository
  init           Initialise a project
  analyze-failure  Explain a failed run
  bootstrap      Bootstrap Case
  check          Check the environment
"""


def fatal(message):
    print(f"Fatal: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv):
    if argv in (["--help"], ["-h"], []):
        print("usage: something else entirely" if SCENARIO == "no-markers" else HELP)
        return 0
    if len(argv) != 5 or argv[:2] != ["run", "--task"] or argv[3] != "--mode":
        fatal("stand-in accepts only: run --task <file> --mode unattended")
    if argv[4] != "unattended":
        fatal(f"invalid --mode {argv[4]}")
    task_path = Path(argv[2])
    if not task_path.is_file():
        fatal(f"task file not found: {task_path}")
    data = Path(os.environ.get("CASE_DATA_DIR") or Path.home() / ".config" / "case")
    config_path = data / "config.json"
    if not config_path.is_file():
        fatal("no projects.json")
    config = json.loads(config_path.read_text())
    projects = json.loads(Path(config["projects"]).read_text())
    task = json.loads(task_path.read_text())
    if "id" not in task:
        fatal("task has no id")
    if task.get("status") != "active":
        print("[unattended] Pipeline completed successfully.")
        return 0
    repo = next((r for r in projects["repos"] if r["name"] == task["repo"]), None)
    if repo is None:
        fatal(f"unknown repo {task['repo']}")
    workspace = Path(repo["path"])
    brief = Path(str(task_path).replace(".task.json", ".md"))
    if not brief.is_file():
        fatal("task brief missing")
    if SCENARIO == "hang":
        subprocess.Popen(["/bin/sh", "-c", "sleep 3600"], start_new_session=True)
        time.sleep(3600)
    run_id = str(uuid.uuid4())
    events_dir = workspace / ".case" / task["id"] / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    log = (events_dir / f"run-{run_id}.jsonl").open("a")
    seq = [0]

    def emit(event, **fields):
        seq[0] += 1
        row = {"event": event, **fields,
               "ts": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
               "sequence": seq[0], "runId": run_id}
        log.write(json.dumps(row) + "\n")
        log.flush()

    emit("pipeline_start", taskId=task["id"], profile="standard")
    emit("phase_start", phase="implement", agent="implementer")
    print("[unattended] [implement] starting implementer...", flush=True)
    if SCENARIO == "failed":
        emit("phase_end", phase="implement", agent="implementer", outcome="failed",
             result={"status": "failed", "error": "AGENT_RESULT start delimiter not found"})
        emit("pipeline_end", outcome="failed", failedAgent="implementer")
        print("[unattended] Pipeline failed at implementer phase.")
        return 0
    for number, (rel, content) in enumerate(sorted(SOLUTION.items()), 1):
        emit("tool_start", phase="implement", agent="implementer", toolCallId=f"t{number}",
             tool="write", args=json.dumps({"path": rel}))
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        emit("tool_end", phase="implement", agent="implementer", toolCallId=f"t{number}",
             tool="write", isError=False)
    # Like Case's bash tool: a detached shell (its own session) makes the commit.
    shell = subprocess.Popen(
        ["/bin/bash", "-c", "git add -A -- ':!.case' && git commit -q -m 'stand-in change'"],
        cwd=workspace, start_new_session=True)
    shell.wait()
    emit("phase_end", phase="implement", agent="implementer", outcome="completed",
         result={"status": "completed", "artifacts": {"filesChanged": sorted(SOLUTION)}})
    marker = workspace / ".case" / task["id"] / "tested"
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
    emit("pipeline_end", outcome="completed")
    print("[unattended] Pipeline completed successfully.", flush=True)
    return 0


sys.exit(main(sys.argv[1:]))
'''

SCENARIOS = ("normal", "hang", "failed", "no-markers")


def write_script_standin(
    path: Path, *, scenario: str = "normal", solution: dict[str, str] | None = None
) -> Path:
    """Write an executable stand-in `ca` at `path`."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown stand-in scenario {scenario!r}")
    text = (
        _TEMPLATE.replace("__SCENARIO_LITERAL__", json.dumps(scenario))
        .replace("__SCENARIO__", scenario)
        .replace("__SOLUTION__", json.dumps(solution or {}, indent=1))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def solution_of(case_dir: Path) -> dict[str, str]:
    """The fixture's deterministic solution (its fake overlay), to bake into a stand-in."""
    overlay = case_dir / "fake" / "solution"
    return {
        p.relative_to(overlay).as_posix(): p.read_text()
        for p in sorted(overlay.rglob("*"))
        if p.is_file()
    }


__all__ = ["SCENARIOS", "solution_of", "write_script_standin"]
