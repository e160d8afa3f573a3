"""The suite runner: real runs in parallel worker processes, aggregates on a mix of a passing and
a failing case, resume and --fresh, and a Ctrl-C mid-suite that leaves every finished bundle
verifying and suite.json written."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT, CaseFactory
from cto_harness.core.executor import Finished, Job, SuiteHooks, SuitePlan
from cto_harness.core.run import execute_run
from cto_harness.core.suite import (
    aggregate,
    pass_at_k,
    run_suite,
    suite_exit_code,
    summary_table,
)
from cto_harness.errors import UsageError
from cto_harness.evidence.verify import verify_bundle

WRONG = {"fake/solution/slugkit/text.py": "def slugify(value):\n    return value.lower()\n"}


def _bundles(suite_dir: Path) -> set[Path]:
    return {p for p in (suite_dir / "runs").glob("*/*") if p.is_dir()}


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(3, 2, 2) == 1.0  # fewer failures than k: some pick always passes
    assert pass_at_k(1, 1, 2) is None  # fewer runs than k: no estimate
    runs = [{"case_id": "a", "verdict": v, "duration_ms": d}
            for v, d in (("pass", 10), ("fail", 30), ("pass", 20), ("fail", 40))]
    agg = aggregate(runs, ["a", "b"], 4)["a"]
    assert (agg["runs"], agg["passes"], agg["fails"], agg["pass_rate"]) == (4, 2, 2, 0.5)
    assert agg["pass@1"] == 0.5 and agg["pass@4"] == 1.0 and agg["median_duration_ms"] == 25
    assert aggregate(runs, ["b"], 4)["b"]["runs"] == 0


def test_exit_code_precedence() -> None:
    def rows(*verdicts: str | None) -> list[dict[str, object]]:
        return [{"verdict": v} for v in verdicts]

    assert suite_exit_code(rows("pass", "pass"), True) == 0
    assert suite_exit_code(rows("pass", "blocked"), True) == 2
    assert suite_exit_code(rows("blocked", "fail"), True) == 1
    assert suite_exit_code(rows("fail", "error"), True) == 3
    assert suite_exit_code(rows("pass"), False) == 3


def _mixed(case_factory: CaseFactory, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A harness with a failing case beside r1: its root, a suite folder, the two cases."""
    return (case_factory("wrong-slugify", files=WRONG), tmp_path / "suite",
            ["r1-string-slugify", "wrong-slugify"])


def test_a_mixed_suite_in_parallel_then_resume_then_fresh(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    root, suite_dir, cases = _mixed(case_factory, tmp_path)
    outcome = run_suite(cases, harness_root=root, repeat=2, jobs=2, suite_dir=suite_dir,
                        progress=None)
    assert outcome.exit_code == 1 and not outcome.interrupted
    data = json.loads((suite_dir / "suite.json").read_text())
    assert data == outcome.data and data["complete"] is True
    assert len(data["runs"]) == 4
    good, bad = data["aggregates"]["r1-string-slugify"], data["aggregates"]["wrong-slugify"]
    assert (good["runs"], good["passes"], good["pass@1"], good["pass@2"]) == (2, 2, 1.0, 1.0)
    assert (bad["runs"], bad["passes"], bad["fails"], bad["pass@1"], bad["pass@2"]) == (
        2, 0, 2, 0.0, 0.0)
    assert good["median_duration_ms"] > 0
    for run in data["runs"]:
        report = verify_bundle(suite_dir / run["run_dir"])
        assert report.verdict == run["verdict"] == (
            "pass" if run["case_id"] == "r1-string-slugify" else "fail")
        assert run["changed_files"] == ["slugkit/text.py"]
    # The two workers really ran at the same time.
    spans = sorted((report.timing.started_at, report.timing.finished_at) for report in
                   (verify_bundle(suite_dir / r["run_dir"]) for r in data["runs"]))
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert len(list((suite_dir / "workers").glob("worker-*.log"))) == 2

    before = _bundles(suite_dir)
    again = run_suite(cases, harness_root=root, repeat=2, jobs=2, suite_dir=suite_dir,
                      progress=None)
    assert _bundles(suite_dir) == before, "verifying bundles are not rerun"
    assert all(r["reused"] for r in again.data["runs"])
    assert again.exit_code == 1

    # A damaged bundle is rerun; the others are kept.
    damaged = suite_dir / data["runs"][0]["run_dir"]
    (damaged / "test.log").write_text("tampered\n")
    third = run_suite(cases, harness_root=root, repeat=2, jobs=2, suite_dir=suite_dir,
                      progress=None)
    assert len(_bundles(suite_dir) - before) == 1
    assert sum(not r["reused"] for r in third.data["runs"]) == 1

    fresh = run_suite(cases, harness_root=root, repeat=2, jobs=2, fresh=True,
                      suite_dir=suite_dir, progress=None)
    assert not any(r["reused"] for r in fresh.data["runs"])
    assert len(_bundles(suite_dir)) == len(before) + 1 + 4
    for run in fresh.data["runs"]:
        verify_bundle(suite_dir / run["run_dir"])


def test_resume_counts_only_what_each_rows_own_bundle_proves(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    # suite.json is unsigned. Edited so that the failing case's row names the passing case's
    # bundle (inside the suite, and by an absolute path), with rows that no bundle backs and
    # rows of no run's shape, a resume counted 2/2 passes for a failing case and signed that.
    root, suite_dir, cases = _mixed(case_factory, tmp_path)
    first = run_suite(cases, harness_root=root, repeat=1, jobs=1, suite_dir=suite_dir,
                      progress=None)
    data = json.loads((suite_dir / "suite.json").read_text())
    good = next(r for r in data["runs"] if r["case_id"] == "r1-string-slugify")
    for row in data["runs"]:
        if row["case_id"] == "wrong-slugify":
            row.update(verdict="pass", run_dir=good["run_dir"])
    data["runs"] += [
        {**good, "case_id": "wrong-slugify", "repeat": 2,
         "run_dir": str(suite_dir / good["run_dir"])},
        {"case_id": "wrong-slugify", "repeat": 3, "verdict": "pass", "run_dir": None},
        {"case_id": "r1-string-slugify", "repeat": 2, "verdict": "pass",
         "run_dir": "../elsewhere/r002"},
        "not a row", {"repeat": 1}, {"case_id": "r1-string-slugify", "repeat": [1]},
    ]
    (suite_dir / "suite.json").write_text(json.dumps(data))

    again = run_suite(cases, harness_root=root, repeat=1, jobs=1, suite_dir=suite_dir,
                      progress=None)
    aggregates = again.data["aggregates"]
    assert (aggregates["wrong-slugify"]["runs"], aggregates["wrong-slugify"]["passes"]) == (1, 0)
    assert (aggregates["r1-string-slugify"]["runs"],
            aggregates["r1-string-slugify"]["passes"]) == (1, 1)
    rows = {(r["case_id"], r["repeat"]): r for r in again.data["runs"]}
    assert set(rows) == {("r1-string-slugify", 1), ("wrong-slugify", 1)}
    assert rows[("r1-string-slugify", 1)]["reused"] is True
    assert rows[("wrong-slugify", 1)]["verdict"] == "fail"
    assert not rows[("wrong-slugify", 1)].get("reused")
    assert again.exit_code == first.exit_code == 1


@pytest.mark.parametrize("planted", ["runs/r1-string-slugify", ".suite.lock",
                                     "workers/worker-0.log"])
def test_a_link_planted_in_the_suite_folder_is_never_written_through(
    tmp_path: Path, planted: str
) -> None:
    # Anyone who can write the suite folder could plant these: the suite (root) wrote its
    # bundles, created its lock or appended its worker log wherever they led.
    suite_dir, victim = tmp_path / "suite", tmp_path / "victim"
    victim.mkdir()
    link = suite_dir / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(victim if planted.startswith("runs") else victim / "made-by-the-suite")
    with pytest.raises(UsageError) as refused:
        run_suite(["r1-string-slugify"], harness_root=HARNESS_ROOT, suite_dir=suite_dir,
                  progress=None)
    assert planted.split("/")[-1] in str(refused.value)
    assert list(victim.iterdir()) == []
    assert link.is_symlink()


def test_a_row_of_suite_json_names_a_few_changed_files_and_counts_them_all(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    # Every changed file's name went into suite.json: 9,000 long names made it 36 MB, past what
    # the suite page reads, and the whole page went blank.
    root = case_factory("many-files", toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "many.py"'),
        files={"many.py": "for i in range(30):\n    open(f'extra-{i:02d}.txt', 'w').write('x')\n"})
    outcome = run_suite(["many-files"], harness_root=root, suite_dir=tmp_path / "suite",
                        progress=None)
    (row,) = outcome.data["runs"]
    assert row["changed_files_count"] == 31 and len(row["changed_files"]) == 20
    assert row["changed_files"][0] == "extra-00.txt"
    assert "(+11 more)" in summary_table(outcome.data)


class _HandsBackOneBundle:
    """An executor (a stale or wrong node) that answers every job with the same bundle."""

    name = "hands-back"

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle

    def execute(self, todo: list[Job], plan: SuitePlan, hooks: SuiteHooks) -> bool:
        for job in todo:
            place = hooks.place(job)
            shutil.copytree(self.bundle, place)
            hooks.finished(job, Finished(run_dir=place))
        return False


def test_a_bundle_that_is_not_the_jobs_run_is_rejected(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    # It verifies (this machine signed it), but it is a run of another case, or lacks the
    # challenge the suite demanded: counted, it made a failing case pass.
    root = case_factory("wrong-slugify", files=WRONG)
    bundle = execute_run("r1-string-slugify", "fake", harness_root=root).run_dir
    other_case = run_suite(["wrong-slugify"], harness_root=root, suite_dir=tmp_path / "a",
                           executor=_HandsBackOneBundle(bundle), progress=None)
    no_challenge = run_suite(["r1-string-slugify"], harness_root=root, challenge="fresh-1",
                             suite_dir=tmp_path / "b", executor=_HandsBackOneBundle(bundle),
                             progress=None)
    for outcome, why in ((other_case, "is a run of r1-string-slugify"),
                         (no_challenge, "does not carry the suite's challenge")):
        (row,) = outcome.data["runs"]
        assert (row["status"], row["verdict"]) == ("bundle_rejected", "error"), row
        assert why in row["message"]
        assert next(iter(outcome.data["aggregates"].values()))["passes"] == 0


def _cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "cto_harness", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def test_ctrl_c_mid_suite_keeps_finished_bundles_and_resumes(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    root = case_factory(
        "slow-slugify",
        files={"fake/slow.py": "import time\ntime.sleep(1.5)\n"},
        toml_edit=lambda t: t.replace('overlay = "fake/solution"',
                                      'overlay = "fake/solution"\nscript = "fake/slow.py"'),
    )
    suite_dir = tmp_path / "suite"
    proc = _cli("suite", "slow-slugify", "--repeat", "6", "--jobs", "2", "--suite-dir",
                str(suite_dir), "--harness-root", str(root), "--json")
    deadline = time.monotonic() + 60
    finished: list[dict[str, object]] = []
    while time.monotonic() < deadline and not finished:
        time.sleep(0.2)
        try:
            data = json.loads((suite_dir / "suite.json").read_text())
        except (OSError, ValueError):
            continue
        finished = [r for r in data["runs"] if r.get("verdict")]
    assert finished, "no run finished in time"
    # Ctrl-C lands mid-run: wait for the event that a next run is under way (its workspace
    # exists, and its bundle is not sealed yet).
    while not any((d / "workspace").is_dir() and not (d / "evidence.dsse.json").exists()
                  for d in _bundles(suite_dir)):
        assert time.monotonic() < deadline + 60 and proc.poll() is None, "no next run started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 3, stderr
    assert "interrupted" in stderr
    data = json.loads((suite_dir / "suite.json").read_text())
    assert json.loads(stdout) == data
    assert data["interrupted"] is True and data["complete"] is False
    statuses = [r["status"] for r in data["runs"]]
    assert "interrupted" in statuses and "pending" in statuses
    done = [r for r in data["runs"] if r["status"] == "done"]
    assert done
    for run in done:
        assert verify_bundle(suite_dir / str(run["run_dir"])).verdict == "pass"
    for run in data["runs"]:
        if run["status"] == "interrupted" and run["run_dir"]:
            # Sealed as interrupted: a whole bundle still, with the blocker named.
            report = verify_bundle(suite_dir / str(run["run_dir"]))
            assert "interrupted" in [b.code for b in report.blockers]
    # No provider of the suite is left running.
    leftover = subprocess.run(["pgrep", "-f", str(suite_dir)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""

    resumed = _cli("suite", "slow-slugify", "--repeat", "6", "--jobs", "2", "--suite-dir",
                   str(suite_dir), "--harness-root", str(root), "--json")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    final = json.loads(stdout)
    assert final["complete"] is True
    assert final["aggregates"]["slow-slugify"]["passes"] == 6
    kept = {r["run_dir"] for r in done}
    assert kept <= {r["run_dir"] for r in final["runs"] if r["reused"]}


def test_cli_usage_errors(tmp_path: Path) -> None:
    proc = _cli("suite", "no-such-case", "--suite-dir", str(tmp_path / "s"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 64 and "unknown case id" in err
    assert not (tmp_path / "s").exists()
    proc = _cli("suite", "--jobs", "0", "--suite-dir", str(tmp_path / "s"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 64
