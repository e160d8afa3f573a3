"""`cto-harness runs list|show|clean` on real bundles (copies of the session's evidence in a
home of the test's own, with the signing key copied so they verify there), tampered ones among
them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from cto_harness.core.history import delete_bundle, parse_duration, parse_since, plan_clean
from cto_harness.errors import UsageError
from cto_harness.settings import Settings
from viewer.conftest import Evidence, copy_bundle


@dataclass
class History:
    home: Path
    runs: Path
    passing: Path
    failing: Path
    tampered: Path
    suite: Path
    outside: Path  # a bundle outside the runs folder, linked from inside it

    def env(self) -> dict[str, str]:
        return {**os.environ, "CTO_HARNESS_HOME": str(self.home),
                "CTO_HARNESS_RUNS_DIR": str(self.runs)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cto_harness", "runs", *args],
                              capture_output=True, text=True, env=self.env(), cwd=REPO_ROOT,
                              timeout=120)

    def settings(self) -> Settings:
        return Settings.from_env(self.env())


@pytest.fixture
def history(evidence: Evidence, tmp_path: Path) -> History:
    home = tmp_path / "home"
    runs = home / "harness-runs"
    runs.mkdir(parents=True)
    shutil.copytree(evidence.home / "keys", home / "keys")
    passing = copy_bundle(evidence.passing, runs / evidence.passing.name)
    failing = copy_bundle(evidence.failing, runs / evidence.failing.name)
    tampered = copy_bundle(evidence.passing, runs / "20200101T000000Z-forged-1")
    report = json.loads((tampered / "report.json").read_text())
    report["case_id"] = "\x1b[2Jevil\ncase"
    report["timing"]["finished_at"] = "2000-01-01T00:00:00Z"
    (tampered / "report.json").write_text(json.dumps(report))
    suite = copy_bundle(evidence.suite, home / "suites" / "s1")
    outside = copy_bundle(evidence.passing, tmp_path / "elsewhere")
    (runs / "linked").symlink_to(outside)
    (runs / "not-a-bundle").mkdir()
    (runs / "not-a-bundle" / "notes.txt").write_text("keep me\n")
    fake = runs / "report-is-a-link"
    fake.mkdir()
    for name in ("report.json", "artifacts.sha256", "freshness.json"):
        (fake / name).symlink_to(outside / name)
    return History(home, runs, passing, failing, tampered, suite, outside)


def test_list_reads_runs_and_suites_and_marks_the_unverified(history: History) -> None:
    proc = history.cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    by_id = {e["id"]: e for e in entries}
    assert len(entries) == 3 + 4  # three bundles in the runs folder, four in the suite
    assert by_id[history.passing.name]["verified"] is True
    assert by_id[history.passing.name]["verdict"] == "pass"
    assert by_id[history.failing.name]["verdict"] == "fail"
    forged = by_id["20200101T000000Z-forged-1"]
    assert forged["verified"] is False and "digest mismatch: report.json" in forged["problem"]
    assert sum(1 for e in entries if e["location"] == "suite s1") == 4
    assert "linked" not in by_id and "not-a-bundle" not in by_id
    assert "report-is-a-link" not in by_id
    started = [e["started_at"] for e in entries if e["verified"]]
    assert started == sorted(started, reverse=True)  # newest first


def test_list_filters(history: History) -> None:
    def ids(*args: str) -> set[str]:
        proc = history.cli("list", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return {e["id"] for e in json.loads(proc.stdout)}

    suite_fails = {"s1/wrong-slugify/r001", "s1/wrong-slugify/r002"}
    assert ids("--verdict", "fail") == {history.failing.name, *suite_fails}
    # The forged one claims pass: only verified verdicts count.
    assert history.tampered.name not in ids("--verdict", "pass")
    assert ids("--verdict", "unverified") == {history.tampered.name}
    assert ids("--case", "wrong-*") == {history.failing.name, *suite_fails}
    assert ids("--engine", "case") == set()
    assert len(ids("--since", "1d")) == 7
    assert ids("--since", "2999-01-01") == set()
    bad = history.cli("list", "--since", "yesterday")
    assert bad.returncode == 64 and "--since" in bad.stderr


def test_list_prints_hostile_report_fields_inert(history: History) -> None:
    proc = history.cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    forged = [line for line in proc.stdout.splitlines() if "forged" in line]
    assert len(forged) == 1 and "\u241b[2Jevil\u2424case" in forged[0]
    assert "UNVERIFIED(says pass)" in forged[0]
    assert "unverified 20200101T000000Z-forged-1: digest mismatch" in proc.stderr


def test_show_by_prefix_and_run_id(history: History) -> None:
    proc = history.cli("show", history.failing.name[:22])
    assert proc.returncode == 0, proc.stderr
    assert "wrong-slugify [fake] FAIL" in proc.stdout
    assert "reason:   the harness's own tests failed" in proc.stdout
    assert f"view:     cto-harness view {history.failing}" in proc.stdout
    run_id = json.loads((history.failing / "report.json").read_text())["run_id"]
    shown = history.cli("show", run_id, "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["entry"]["path"] == str(history.failing)
    in_suite = history.cli("show", "s1/wrong-slugify/r002")
    assert in_suite.returncode == 0 and "wrong-slugify [fake] FAIL" in in_suite.stdout
    # The forged bundle is a copy of the passing one: their run id names two bundles.
    copied = json.loads((history.passing / "report.json").read_text())["run_id"]
    twice = history.cli("show", copied)
    assert twice.returncode == 64 and "matches 2 runs" in twice.stderr
    forged = history.cli("show", "20200101T")
    assert forged.returncode == 1 and "UNVERIFIED (the report claims PASS)" in forged.stdout
    for ident, message in (("2", "matches"), ("nothing-like-it", "no run matches")):
        proc = history.cli("show", ident)
        assert proc.returncode == 64 and message in proc.stderr


def test_clean_dry_run_deletes_nothing(history: History) -> None:
    before = sorted(p.name for p in history.runs.iterdir())
    proc = history.cli("clean", "--older-than", "0s", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("would delete") == 3
    assert sorted(p.name for p in history.runs.iterdir()) == before


def test_clean_deletes_only_bundles_of_the_runs_folder(history: History) -> None:
    proc = history.cli("clean", "--older-than", "0s", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(result["deleted"]) == sorted(
        [history.passing.name, history.failing.name, history.tampered.name])
    left = sorted(p.name for p in history.runs.iterdir())
    assert left == ["linked", "not-a-bundle", "report-is-a-link"]
    assert (history.runs / "not-a-bundle" / "notes.txt").read_text() == "keep me\n"
    assert (history.outside / "report.json").is_file()  # the link's target is untouched
    assert len(list((history.suite / "runs").glob("*/*"))) == 4  # suites are left alone


def test_clean_keep_failed_keeps_failures_and_the_unverified(history: History) -> None:
    proc = history.cli("clean", "--older-than", "0s", "--keep-failed")
    assert proc.returncode == 0, proc.stderr
    assert not history.passing.exists()
    assert history.failing.is_dir() and history.tampered.is_dir()
    assert "kept: verdict fail" in proc.stdout
    assert "kept: unverified, its verdict is not proven" in proc.stdout


def test_an_unverified_bundle_is_as_young_as_its_newest_file(history: History) -> None:
    now = datetime.now(UTC) + timedelta(hours=2)
    plan = {i.entry.name: i for i in plan_clean(history.settings(), timedelta(days=1),
                                                keep_failed=False, now=now)}
    # It claims to have finished in 2000; its files were written today: kept.
    assert plan[history.tampered.name].delete is False
    assert plan[history.tampered.name].age < timedelta(days=1)
    later = {i.entry.name: i for i in plan_clean(history.settings(), timedelta(days=1),
                                                 keep_failed=False, now=now + timedelta(days=2))}
    assert all(item.delete for item in later.values())


def test_delete_refuses_what_is_not_a_bundle_of_the_runs_folder(history: History) -> None:
    settings = history.settings()
    for path in (history.outside, history.runs / "linked", history.runs / "not-a-bundle",
                 history.runs / "report-is-a-link", history.suite / "runs" / "r1-string-slugify"
                 / "r001"):
        with pytest.raises(UsageError):
            delete_bundle(settings, path)
        assert path.exists()


def test_durations_and_dates() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("7", "d", "-1d", "1y", ""):
        with pytest.raises(UsageError):
            parse_duration(bad)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_since("1d", now) == datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("args", [("list", "--since", "999999999d"),
                                  ("clean", "--older-than", "99999999999w", "--dry-run")])
def test_a_duration_out_of_range_is_a_usage_error(history: History, args: tuple[str, ...]
                                                  ) -> None:
    """timedelta and datetime arithmetic raised OverflowError: exit 3, a harness error."""
    proc = history.cli(*args)
    assert proc.returncode == 64, proc.stderr
    assert "Traceback" not in proc.stderr


def test_clean_removes_a_workspace_nested_past_the_recursion_limit(history: History) -> None:
    """The provider's working copy stays in the bundle, and it may nest folders at any depth:
    shutil.rmtree recursed once per level and ended `runs clean` with a RecursionError
    traceback, the bundle already renamed out of the listing and left on disk."""
    folder = history.passing / "workspace"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(sys.getrecursionlimit() + 200):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    proc = history.cli("clean", "--older-than", "0s", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert history.passing.name in json.loads(proc.stdout)["deleted"]
    assert not [p.name for p in history.runs.iterdir() if p.name.startswith(".deleting-")]
