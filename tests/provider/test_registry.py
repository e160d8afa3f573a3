"""The admission registry: atomic, locked, crash-safe, content-addressed lookups."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cto_harness.errors import Blocked
from cto_harness.providers.registry import (
    admission_summary,
    find_admission,
    list_admissions,
    lookup_admission,
    record_admission,
    registry_path,
)
from cto_harness.settings import Settings
from standin_helpers import POLICY_PIN, REPO_ROOT, run_provider_cli, write_script_binary
from standin_helpers import make_admission_record as make_record


def settings_for(home: Path) -> Settings:
    return Settings.from_env({"CTO_HARNESS_HOME": str(home)})


def test_record_replace_and_list(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert list_admissions(settings) == []
    record_admission(settings, make_record("a" * 64))
    record_admission(settings, make_record("b" * 64))
    record_admission(settings, make_record("a" * 64, provenance_level="built"))
    records = list_admissions(settings)
    assert [r.sha256 for r in records] == ["b" * 64, "a" * 64]
    assert find_admission(settings, "a" * 64).provenance_level == "built"  # type: ignore[union-attr]
    data = json.loads(registry_path(settings).read_text())
    assert data["schema_version"] == 1 and len(data["admissions"]) == 2


def test_lookup_rehashes_the_bytes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    binary = write_script_binary(tmp_path / "ca")
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    assert lookup_admission(settings, binary) is None
    record_admission(settings, make_record(sha))
    copy = tmp_path / "copy" / "ca"
    copy.parent.mkdir()
    copy.write_bytes(binary.read_bytes())
    assert lookup_admission(settings, copy) is not None  # same bytes, any path
    with open(copy, "ab") as handle:
        handle.write(b"\n# changed\n")
    assert lookup_admission(settings, copy) is None
    assert lookup_admission(settings, tmp_path / "missing") is None
    record_admission(settings, make_record(sha, status="not_admitted"))
    assert lookup_admission(settings, binary) is None


def test_invalid_registry_fails_closed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    path = registry_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 1, "admissions": [{"sha256": "x"}]}')
    with pytest.raises(Blocked) as caught:
        list_admissions(settings)
    assert caught.value.code == "admission_registry_invalid"
    with pytest.raises(Blocked):
        record_admission(settings, make_record("c" * 64))
    assert "x" in path.read_text()  # not silently rewritten
    assert admission_summary(settings)["valid"] is False


@pytest.mark.parametrize("shape", ["directory", "fifo", "link_to_device"])
def test_a_registry_that_is_no_file_fails_closed_at_once(tmp_path: Path, shape: str) -> None:
    # A directory was a traceback, a FIFO hung every command that reads the registry (health
    # ignored SIGTERM), a link to /dev/zero ran out of memory.
    settings = settings_for(tmp_path)
    path = registry_path(settings)
    path.parent.mkdir(parents=True)
    if shape == "directory":
        path.mkdir()
    elif shape == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(Blocked) as caught:
        list_admissions(settings)
    assert caught.value.code == "admission_registry_invalid"
    assert admission_summary(settings)["valid"] is False


def test_summary_counts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    record_admission(settings, make_record("a" * 64))
    record_admission(settings, make_record("b" * 64, provenance_level="built",
                                           admitted_at="2026-02-01T00:00:00.000Z"))
    record_admission(settings, make_record("c" * 64, status="not_admitted"))
    summary = admission_summary(settings)
    assert summary["total"] == 3 and summary["admitted"] == 2
    assert summary["by_provenance"] == {"built": 1, "fetched": 0, "asserted": 1}
    assert summary["latest"]["sha256"] == "b" * 64
    assert summary["store_missing"] == 2
    # A recorded path no system call takes is missing, not an OSError out of `health`.
    record_admission(settings, make_record("d" * 64, store_path="/" + "a" * 5000))
    assert admission_summary(settings)["store_missing"] == 3


# A writer in its own process: `crash-before-rename` dies (like a power cut) right after writing
# and fsyncing its temp file, before the rename; `loop` records admissions until it is killed.
_CHILD = """
import os, sys
from cto_harness.settings import Settings
from cto_harness.providers import registry

mode, home = sys.argv[1], sys.argv[2]
settings = Settings.from_env({"CTO_HARNESS_HOME": home})
pin = "7959ac917cdeb0983b4aaa20bb9f42021747fed8"

def record(sha):
    return registry.AdmissionRecord(
        sha256=sha, status="admitted", provenance_level="asserted", store_path="/x/ca",
        size_bytes=1, source_url="https://github.com/workos/case.git", commit=pin,
        policy_commit=pin, admitted_at="2026-01-01T00:00:00.000Z", build_report="/x/r.json",
        identity_evidence_sha256="0" * 64,
    )

if mode == "crash-before-rename":
    os.replace = lambda *args, **kwargs: os._exit(9)
    registry.record_admission(settings, record("d" * 64))
else:
    n = 0
    while True:
        n += 1
        registry.record_admission(settings, record(f"{n:064x}"))
"""


def _child(mode: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.Popen([sys.executable, "-c", _CHILD, mode, str(home)], env=env)


def test_crash_between_temp_write_and_rename_leaves_old_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = settings_for(home)
    record_admission(settings, make_record("a" * 64))
    before = registry_path(settings).read_bytes()
    child = _child("crash-before-rename", home)
    assert child.wait(timeout=60) == 9  # died after writing its temp file, before the rename
    leftovers = list(registry_path(settings).parent.glob(".admissions.json.*.tmp"))
    assert leftovers, "the crash should have left its temp file behind"
    assert registry_path(settings).read_bytes() == before
    # The lock died with the process; the next writer cleans the temp file and succeeds.
    record_admission(settings, make_record("e" * 64))
    assert {r.sha256 for r in list_admissions(settings)} == {"a" * 64, "e" * 64}
    assert not list(registry_path(settings).parent.glob(".admissions.json.*.tmp"))


def test_sigkill_mid_write_never_leaves_a_partial_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = settings_for(home)
    seen_counts = []
    for delay in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
        child = _child("loop", home)
        # Kill it mid-loop, not while it is still starting: wait for its first write (an event;
        # a loaded machine may take seconds to start Python), then give it a varying time, so
        # that kills land at varying points of a write.
        deadline = time.monotonic() + 120
        while not registry_path(settings).exists():
            assert time.monotonic() < deadline and child.poll() is None, "the writer never wrote"
            time.sleep(0.01)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        records = list_admissions(settings)  # raises if the file were partial
        json.loads(registry_path(settings).read_text())
        seen_counts.append(len(records))
    assert seen_counts[-1] > 0, "the writer should have recorded something before being killed"


@pytest.mark.slow
def test_concurrent_admissions_from_separate_processes_all_land(tmp_path: Path) -> None:
    home = tmp_path / "home"
    binaries = [write_script_binary(tmp_path / f"bin{i}" / "ca", tag=str(i)) for i in range(6)]
    env = {**os.environ, "CTO_HARNESS_HOME": str(home),
           "PYTHONPATH": str(REPO_ROOT / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cto_harness", "provider", "admit",
             "--binary", str(binary), "--source-url", "https://github.com/workos/case.git",
             "--commit", POLICY_PIN],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for binary in binaries
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs), outputs
    data = json.loads(registry_path(settings_for(home)).read_text())
    digests = {hashlib.sha256(b.read_bytes()).hexdigest() for b in binaries}
    assert {entry["sha256"] for entry in data["admissions"]} == digests
    assert all(entry["provenance_level"] == "asserted" for entry in data["admissions"])
    listed = run_provider_cli(home, "list", "--json")
    assert listed.returncode == 0
    assert len(json.loads(listed.stdout)["admissions"]) == len(binaries)


def test_a_registry_written_before_distribution_kinds_still_reads(tmp_path: Path) -> None:
    # Records once named the pin `commit` and had no `kind`: they are source-kind records.
    settings = Settings.from_env({"CTO_HARNESS_HOME": str(tmp_path)})
    path = registry_path(settings)
    path.parent.mkdir(parents=True)
    old = make_record("a" * 64).model_dump(mode="json")
    old["commit"], old["policy_commit"] = old.pop("pin"), old.pop("policy_pin")
    del old["kind"], old["origin"]
    path.write_text(json.dumps({"schema_version": 1, "admissions": [old]}))
    (record,) = list_admissions(settings)
    assert (record.kind, record.pin, record.policy_pin) == ("source", old["commit"],
                                                            old["policy_commit"])


@pytest.mark.parametrize("planted", ["entry", "binary"])
def test_a_link_planted_in_the_store_carries_nothing_out(tmp_path: Path, planted: str) -> None:
    # The entry's name is the digest, known before admission: a link there was followed, the
    # folder it led to made read-only and the binary and reports moved into it.
    from cto_harness.errors import HarnessFault
    from cto_harness.providers.store import open_store_entry, staged_copy, store_entry_dir

    settings = settings_for(tmp_path / "home")
    source = tmp_path / "ca"
    source.write_bytes(b"#!/bin/sh\necho ca\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    with staged_copy(settings, source, "case", "ca") as staged:
        entry = store_entry_dir(settings, staged.sha256, "case")
        if planted == "entry":
            entry.symlink_to(elsewhere)
        else:
            entry.mkdir()
            (entry / "ca").symlink_to(elsewhere / "ca")
        with pytest.raises(HarnessFault, match="not a plain"), \
                open_store_entry(settings, staged, "case"):
            pass
    assert list(elsewhere.iterdir()) == []
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700


def test_a_confined_build_step_whose_processes_outlived_the_sweep_stops_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's sandbox uid is swept when it ends; if the sweep cannot prove its processes gone
    (fault injected here: no sweep has been made to fail for real), the build stops there, with
    the folder never taken back, instead of going on to hash what they could still change."""
    from cto_harness.errors import Blocked
    from cto_harness.providers.steps import StepConfinement, run_step
    from cto_harness.sandbox import confined

    if os.geteuid() != 0:
        pytest.skip("the sweep runs for a root harness only")
    real_sweep, real_run = confined.users.sweep, confined.run_process
    ran: list[bool] = []

    def run_then_note(*args: object, **kwargs: object) -> object:
        ran.append(True)
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    def failing_after_the_step(uid: int, **kwargs: object) -> object:
        # The uid's allocation sweeps too: only the sweep after the step fails.
        return ([], False) if ran else real_sweep(uid, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(confined, "run_process", run_then_note)
    monkeypatch.setattr(confined.users, "sweep", failing_after_the_step)
    work = tmp_path / "build"
    (work / "logs").mkdir(parents=True)
    settings = settings_for(tmp_path / "home")
    with pytest.raises(Blocked) as blocked:
        run_step(["/bin/true"], shown=["true"], index=1, cwd=work, env={"PATH": "/usr/bin:/bin"},
                 logs=work / "logs", timeout=60,
                 confine=StepConfinement(work=work, settings=settings))
    assert "sweep did not end" in blocked.value.message
