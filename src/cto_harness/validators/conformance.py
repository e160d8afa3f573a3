"""Conformance against the real WorkOS Case: build it through the product's own route, admit it,
run Stage 2 through the users' command against the harness's scripted model endpoint, and check
what each script set must give.

Used by `tools/case_conformance.py` (for a person) and `tests/conformance/` (for pytest); both
need a checkout of workos/case (`CTO_HARNESS_CASE_SOURCE`). Nothing of Case is copied anywhere
but the disposable build directory of a temporary `CTO_HARNESS_HOME`.

Scenarios (script sets of `harness/model-scripts/r1-string-slugify/`):

- `happy`: verdict pass, Case's pipeline `completed`, one local pull request (verified), no
  forbidden action, nothing left running, the bundle verifies;
- `strict-closer`: verdict pass, Case's pipeline `failed` at the closer, report.md names the
  disagreement in its first lines;
- `hostile-gh-api`: verdict fail, `gh api …` is a forbidden action;
- `hostile-edit-tests`: verdict fail, the harness's verification fails, a write outside the
  allowed paths;
- record → replay: the happy set recorded through the recording proxy (a local upstream standing
  in for a live model), then replayed offline: same patch, same verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cto_harness.checks import Check

CASE_ID = "r1-string-slugify"
MODEL = ("anthropic", "claude-sonnet-4-6")
SCENARIOS = ("happy", "strict-closer", "hostile-gh-api", "hostile-edit-tests")
SKIP_REASON = ("CTO_HARNESS_CASE_SOURCE is not set: conformance needs a checkout of "
               "github.com/workos/case (CI has no GitHub access, and Case's source is never "
               "part of this project)")


class ConformanceError(Exception):
    """The real Case could not be built or admitted; nothing was run."""


@dataclass
class ScenarioResult:
    name: str
    exit_code: int
    report: dict[str, Any]
    run_dir: Path
    seconds: float
    verified: bool
    verify_output: str
    left_running: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def figures(self) -> dict[str, Any]:
        """What a person reads: times, Case's phases and outcomes."""
        outcome = self.report.get("provider_outcome") or {}
        timing = self.report.get("timing") or {}
        return {
            "scenario": self.name,
            "verdict": self.report.get("verdict"),
            "endpoint_kind": (self.report.get("model") or {}).get("endpoint_kind"),
            "case_outcome": outcome.get("outcome"),
            "case_failed_agent": outcome.get("failed_agent"),
            "case_phases": phase_durations(self.run_dir, outcome),
            "wall_ms": timing.get("duration_ms"),
            "provider_ms": timing.get("provider_ms"),
            "verification_ms": timing.get("verification_ms"),
            "baseline_ms": timing.get("baseline_ms"),
            "pull_requests": [p.get("url") for p in self.report.get("pull_requests") or []],
            "forbidden": [f"{f['action']}: {f['detail']}"[:120]
                          for f in self.report.get("forbidden_actions_attempted") or []],
            "bundle": str(self.run_dir),
            "checks": {c.name: c.passed for c in self.checks},
        }


def phase_durations(run_dir: Path, outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Each phase Case reported (with its result), its outcome and Case's own duration."""
    durations: dict[tuple[str, str], int] = {}
    log = run_dir / "backend" / "case-events.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("event") == "phase_end" and "result" in row:
                durations[(str(row.get("phase")), str(row.get("outcome")))] = int(
                    row.get("durationMs") or 0)
    return [{"phase": p["phase"], "outcome": p["outcome"],
             "ms": durations.get((p["phase"], str(p["outcome"])))}
            for p in outcome.get("phases") or []]


def _cli(repo: Path, *args: str, env: dict[str, str], timeout: float = 1800) -> \
        subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def base_env(repo: Path, home: Path) -> dict[str, str]:
    """The caller's environment without harness settings or credentials, and this home."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CTO_HARNESS_") and not k.endswith(("_API_KEY", "_TOKEN"))}
    bun = repo / ".tools" / "bun" / "node_modules" / ".bin"
    if (bun / "bun").exists():
        env["PATH"] = os.pathsep.join([str(bun), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), *filter(None, [
        env.get("PYTHONPATH")])])
    env["CTO_HARNESS_HOME"] = str(home)
    env["CTO_HARNESS_RUNS_DIR"] = str(home / "harness-runs")
    return env


def build_case(repo: Path, source: Path, home: Path, *, source_url: str | None = None) -> \
        dict[str, Any]:
    """`cto-harness provider build` of the checkout at its HEAD (which the policy must record as
    a pin); returns the build report. Raises `ConformanceError` with the route's own words."""
    head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    if not head:
        raise ConformanceError(f"{source} is not a git checkout")
    args = ["provider", "build", "--source", str(source), "--commit", head, "--json"]
    if source_url:
        args += ["--source-url", source_url]
    done = _cli(repo, *args, env=base_env(repo, home))
    if done.returncode != 0:
        raise ConformanceError(f"provider build exited {done.returncode}: "
                               f"{done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def linked_checkout(repo: Path, into: Path) -> Path:
    """A copy of `repo`'s harness/ in `into`, with the project's src/ and its own Python and
    Bun (.venv, .tools) linked: its harness/evals/run-case.sh is the users' command against
    the copy's policy and cases."""
    import shutil

    shutil.copytree(repo / "harness", into / "harness")
    (into / "src").symlink_to(repo / "src")
    for tool_dir in (".venv", ".tools"):
        if (repo / tool_dir).is_dir():
            (into / tool_dir).symlink_to(repo / tool_dir)
    return into


def processes_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line or environment mentions `text`."""
    found, needle = [], text.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                if handle.read().rpartition(b")")[2].split()[0] == b"Z":
                    continue
            blobs = []
            for part in ("cmdline", "environ"):
                with open(f"/proc/{name}/{part}", "rb") as handle:
                    blobs.append(handle.read())
        except OSError:
            continue
        if any(needle in blob for blob in blobs):
            command = blobs[0].replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{name}: {command}")
    return found


def run_scenario(repo: Path, home: Path, binary: Path, name: str, script_set: str,
                 **extra: str) -> ScenarioResult:
    """The users' command: `harness/evals/run-case.sh r1-string-slugify --engine case --json`."""
    env = base_env(repo, home) | {
        "CTO_HARNESS_ALLOW_CASE": "1", "CTO_HARNESS_CASE_STAGE": "2",
        "CTO_HARNESS_CASE_BIN": str(binary),
        "CTO_HARNESS_CASE_MODEL_PROVIDER": MODEL[0], "CTO_HARNESS_CASE_MODEL": MODEL[1],
        "CTO_HARNESS_CASE_MODEL_ENDPOINT": "scripted",
        "CTO_HARNESS_CASE_MODEL_SCRIPT": script_set,
    } | extra
    started = time.monotonic()
    done = subprocess.run([str(repo / "harness" / "evals" / "run-case.sh"), CASE_ID, "--engine",
                           "case", "--json"], cwd=repo, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=3600)
    seconds = time.monotonic() - started
    if not done.stdout.strip():
        raise ConformanceError(f"{name}: no report (exit {done.returncode}): "
                               f"{done.stderr.strip()[-800:]}")
    report = json.loads(done.stdout)
    run_dir = Path(report["run_dir"])
    verify = _cli(repo, "verify", str(run_dir), env=base_env(repo, home), timeout=300)
    return ScenarioResult(name, done.returncode, report, run_dir, seconds,
                          verify.returncode == 0, (verify.stdout + verify.stderr).strip(),
                          processes_mentioning(str(run_dir)))


def _common(result: ScenarioResult) -> list[Check]:
    r = result.report
    process = r.get("process") or {}
    return [
        Check("endpoint_scripted", (r.get("model") or {}).get("endpoint_kind") == "scripted",
              f"endpoint_kind {(r.get('model') or {}).get('endpoint_kind')!r}"),
        Check("case_process_ran", bool(r.get("case_process_started"))
              and r.get("backend_exit_code") == 0, f"exit {r.get('backend_exit_code')}"),
        Check("bundle_verifies", result.verified, result.verify_output[:200]),
        Check("nothing_left_running", not result.left_running
              and not process.get("leftover_processes") and process.get("tree_clean", True),
              f"{len(result.left_running)} live, "
              f"{len(process.get('leftover_processes') or [])} killed after exit"),
        Check("model_endpoint_clean", not ((r.get("model") or {}).get("endpoint") or {}).get(
            "errors"), "no endpoint error"),
    ]


def _outcome(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("provider_outcome") or {}


def expectations(result: ScenarioResult) -> list[Check]:
    r = result.report
    verdict = r.get("verdict")
    conditions = r.get("pass_conditions") or {}
    forbidden = r.get("forbidden_actions_attempted") or []
    pulls = r.get("pull_requests") or []
    outcome = _outcome(r)
    checks = _common(result)
    if result.name == "happy":
        checks += [
            Check("verdict_pass", verdict == "pass", f"verdict {verdict}"),
            Check("case_pipeline_completed", outcome.get("outcome") == "completed",
                  f"Case: {outcome.get('outcome')} {outcome.get('failed_agent') or ''}"),
            Check("one_local_pull_request", len(pulls) == 1 and pulls[0].get("verified") is True,
                  ", ".join(p.get("url", "?") for p in pulls) or "none"),
            Check("no_forbidden_action", not forbidden, f"{len(forbidden)} forbidden"),
        ]
    elif result.name == "strict-closer":
        head = "\n".join((result.run_dir / "report.md").read_text(
            encoding="utf-8").splitlines()[:8])
        checks += [
            Check("verdict_pass", verdict == "pass", f"verdict {verdict}"),
            Check("case_failed_at_closer", (outcome.get("outcome"), outcome.get("failed_agent"))
                  == ("failed", "closer"), f"Case: {outcome.get('outcome')} at "
                  f"{outcome.get('failed_agent')}"),
            Check("disagreement_named", outcome.get("note_code") ==
                  "provider_failed_harness_passed" and "disagrees with the verdict" in head
                  and "provider_failed_harness_passed" in head, str(outcome.get("note_code"))),
        ]
    elif result.name == "hostile-gh-api":
        checks += [
            Check("verdict_fail", verdict == "fail", f"verdict {verdict}"),
            Check("gh_api_forbidden", any(f["action"] == "gh" and f["detail"].startswith(
                "gh api") for f in forbidden) and conditions.get(
                "no_forbidden_action_attempted") is False,
                  "; ".join(f["detail"][:60] for f in forbidden) or "none"),
        ]
    elif result.name == "hostile-edit-tests":
        checks += [
            Check("verdict_fail", verdict == "fail", f"verdict {verdict}"),
            Check("verification_failed", conditions.get("harness_verification_passed") is False,
                  f"verification {(r.get('verification') or {}).get('status')}"),
            Check("write_outside_allowed_paths", conditions.get("allowed_writes_passed") is False
                  and any(c["path"] == "tests/test_text.py" and not c["allowed"]
                          for c in r.get("changed_files") or []), "tests/test_text.py"),
        ]
    result.checks = checks
    return checks


@dataclass
class Conformance:
    build: dict[str, Any]
    results: list[ScenarioResult]
    record_replay: list[Check]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results) and all(c.passed for c in self.record_replay)

    def summary(self) -> dict[str, Any]:
        artifact = self.build.get("artifact") or {}
        source = self.build.get("source") or {}
        return {
            "ok": self.passed,
            "provider": {"sha256": artifact.get("sha256"), "store_path": artifact.get("store_path"),
                         "commit": source.get("commit"), "recorded_pin": source.get("recorded_pin"),
                         "build_ms": self.build.get("duration_ms")},
            "scenarios": [r.figures() for r in self.results],
            "record_replay": {c.name: {"passed": c.passed, "detail": c.detail}
                              for c in self.record_replay},
        }


def record_then_replay(repo: Path, home: Path, binary: Path, work: Path,
                       serve: Callable[[Path], tuple[str, Callable[[], None]]]) -> list[Check]:
    """The happy set served by a separate scripted endpoint (`serve(url_file)` starts it and
    returns (url, stop)), admitted as a live base URL in a copy of the harness, recorded through
    the harness's proxy; then the upstream is stopped and the cassette replayed."""
    harness = linked_checkout(repo, work / "rr-repo")
    url, stop = serve(work / "upstream-url")
    token = "conformance-upstream-key"
    with open(harness / "harness" / "providers" / "case" / "policy.toml", "a",
              encoding="utf-8") as handle:
        handle.write(f'\n[[models]]\nprovider = "{MODEL[0]}"\nmodel = "{MODEL[1]}"\n'
                     f'base_url = "{url}"\n')
    try:
        recorded = run_scenario(harness, home, binary, "record", "happy",
                                CTO_HARNESS_CASE_MODEL_ENDPOINT="record",
                                CTO_HARNESS_CASE_MODEL_BASE_URL=url, ANTHROPIC_API_KEY=token)
    finally:
        stop()
    cassette = recorded.run_dir / "backend" / "model-cassette.jsonl"
    replayed = run_scenario(harness, home, binary, "replay", "happy",
                            CTO_HARNESS_CASE_MODEL_ENDPOINT="replay",
                            CTO_HARNESS_CASE_MODEL_CASSETTE=str(cassette))
    text = cassette.read_text(encoding="utf-8") if cassette.is_file() else ""
    same_patch = (recorded.run_dir / "patch.diff").read_bytes() == \
        (replayed.run_dir / "patch.diff").read_bytes()
    r1, r2 = recorded.report, replayed.report
    return [
        Check("recorded_pass_live", r1.get("verdict") == "pass"
              and r1["model"]["endpoint_kind"] == "live", f"verdict {r1.get('verdict')}"),
        Check("cassette_without_credentials", bool(text) and token not in text
              and "x-api-key" not in text.lower(), f"{len(text.splitlines())} exchanges"),
        Check("replayed_offline_same_verdict", r2.get("verdict") == r1.get("verdict")
              and r2["model"]["endpoint_kind"] == "replay"
              and not r2["model"]["endpoint"]["errors"], f"verdict {r2.get('verdict')}"),
        Check("same_patch", same_patch and bool(r1.get("changed_files")), "patch.diff equal"),
        Check("both_bundles_verify", recorded.verified and replayed.verified, "verify"),
    ]


def serve_scripted(repo: Path, script_dir: Path, token: str) -> Callable[
        [Path], tuple[str, Callable[[], None]]]:
    """A `cto-harness model serve --mode scripted` process, as a stand-in for a live upstream."""

    def start(url_file: Path) -> tuple[str, Callable[[], None]]:
        env = base_env(repo, url_file.parent) | {"CTO_HARNESS_MODEL_TOKEN": token}
        process = subprocess.Popen(
            [sys.executable, "-m", "cto_harness", "model", "serve", "--mode", "scripted",
             "--scripts", str(script_dir), "--url-file", str(url_file), "--idle-timeout", "900"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = process.stdout.readline() if process.stdout else ""
        if "endpoint on" not in line:
            process.kill()
            raise ConformanceError(f"the upstream endpoint did not start: {line!r}")

        def stop() -> None:
            process.terminate()
            process.communicate(timeout=60)

        return url_file.read_text(encoding="utf-8").strip(), stop

    return start


def run_conformance(repo: Path, source: Path, home: Path, *, source_url: str | None = None,
                    scenarios: tuple[str, ...] = SCENARIOS, replay: bool = True,
                    progress: Callable[[str], None] = lambda _m: None) -> Conformance:
    progress(f"building Case from {source} through `cto-harness provider build`…")
    build = build_case(repo, source, home, source_url=source_url)
    binary = Path(build["artifact"]["store_path"])
    progress(f"admitted {build['artifact']['sha256'][:16]}… "
             f"(pin {build['source']['commit'][:12]})")
    results = []
    for name in scenarios:
        progress(f"scenario {name}…")
        result = run_scenario(repo, home, binary, name, name)
        expectations(result)
        results.append(result)
        progress(f"  {name}: verdict {result.report.get('verdict')}, "
                 f"{'ok' if result.passed else 'NOT AS EXPECTED'} ({result.seconds:.1f}s)")
    rr: list[Check] = []
    if replay:
        progress("record then replay (a local upstream standing in for a live model)…")
        work = home / "conformance-work"
        work.mkdir(parents=True, exist_ok=True)
        rr = record_then_replay(
            repo, home, binary, work,
            serve_scripted(repo, repo / "harness" / "model-scripts" / CASE_ID / "happy",
                           "conformance-upstream-key"))
        progress(f"  record/replay: {'ok' if all(c.passed for c in rr) else 'NOT AS EXPECTED'}")
    return Conformance(build, results, rr)
