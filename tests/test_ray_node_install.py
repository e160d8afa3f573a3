"""What a Ray node does with the provider bytes it is sent (no Ray needed: the node function takes
bytes as well as object refs): the right bytes land in its own store and registry and pass the
admission lookup the engine does; wrong bytes and a tampered store entry never do, and the
tampered entry is not repaired."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT
from cto_harness import __version__
from cto_harness.core.executor import SuitePlan
from cto_harness.executors.archive import ArchiveRejected, pack_tree
from cto_harness.executors.ray_executor import _harness_archive
from cto_harness.executors.ray_node import (
    TASKS,
    engine_variables,
    install_provider,
    materialize_harness,
    run_task,
)
from cto_harness.providers.registry import find_admission, lookup_admission
from cto_harness.settings import Settings
from standin_helpers import make_admission_record, write_script_binary


def _setup(tmp_path: Path) -> tuple[Settings, Path, bytes, dict]:
    binary = write_script_binary(tmp_path / "src" / "ca", tag="node-install")
    data = binary.read_bytes()
    record = make_admission_record(hashlib.sha256(data).hexdigest())
    settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(tmp_path / "node")})
    scratch = settings.runs_dir / "ray"
    scratch.mkdir(parents=True)
    return settings, scratch, data, {"record": record.model_dump(mode="json"), "binary": "ca"}


def test_right_bytes_are_stored_admitted_and_pass_the_lookup(tmp_path: Path) -> None:
    settings, scratch, data, provider = _setup(tmp_path)
    path = install_provider(settings, scratch, provider, [data])
    digest = provider["record"]["sha256"]
    assert path == settings.providers_dir / "case" / digest / "ca"
    assert (path.read_bytes() == data and not os.access(path, os.W_OK)) or os.geteuid() == 0
    record = lookup_admission(settings, path)
    assert record is not None and record.store_path == str(path)
    # Installed once: a second task finds it and does not need the bytes at all.
    assert install_provider(settings, scratch, provider, []) == path


def test_wrong_bytes_are_never_stored_and_fail_the_lookup(tmp_path: Path) -> None:
    settings, scratch, data, provider = _setup(tmp_path)
    path = install_provider(settings, scratch, provider, [data + b"# changed in transit\n"])
    assert "quarantine" in path.parts
    assert not (settings.providers_dir / "case" / provider["record"]["sha256"]).exists()
    assert lookup_admission(settings, path) is None  # the engine's gate: provider_not_admitted


def test_a_tampered_store_entry_is_not_repaired_and_fails_the_lookup(tmp_path: Path) -> None:
    settings, scratch, data, provider = _setup(tmp_path)
    entry = settings.providers_dir / "case" / provider["record"]["sha256"]
    entry.mkdir(parents=True)
    (entry / "ca").write_bytes(data + b"# tampered on the node\n")
    path = install_provider(settings, scratch, provider, [data])
    assert path == entry / "ca"
    assert path.read_bytes() == data + b"# tampered on the node\n"
    assert find_admission(settings, provider["record"]["sha256"]) is not None
    assert lookup_admission(settings, path) is None


def test_the_harness_archive_is_checked_against_its_digest(tmp_path: Path) -> None:
    tree = tmp_path / "harness"
    (tree / "providers").mkdir(parents=True)
    (tree / "providers" / "policy.toml").write_text("x = 1\n")
    data = pack_tree(tree)
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ArchiveRejected):
        materialize_harness(tmp_path / "scratch", digest, [data + b"\0" * 512])
    root = materialize_harness(tmp_path / "scratch", digest, [data])
    assert (root / "providers" / "policy.toml").read_text() == "x = 1\n"
    assert materialize_harness(tmp_path / "scratch", digest, []) == root  # cached by digest


def test_engine_variables_are_the_engines_own_and_never_the_binary() -> None:
    names, binary = engine_variables("case")
    assert binary == "CTO_HARNESS_CASE_BIN" and binary not in names
    assert {"CTO_HARNESS_ALLOW_CASE", "CTO_HARNESS_CASE_STAGE", "CTO_HARNESS_CASE_MODEL",
            "CTO_HARNESS_CASE_TIMEOUT_SECONDS"} <= set(names)
    assert not {"CTO_HARNESS_HOME", "CTO_HARNESS_RUNS_DIR", "CTO_HARNESS_ISOLATION"} & set(names)
    assert engine_variables("fake")[1] is None  # no provider: nothing is shipped


def test_a_task_takes_only_the_engines_variables_from_the_driver(
    tmp_path: Path, harness_home: Path
) -> None:
    """The driver may set the suite's engine settings on a node, never where the node keeps its
    keys, store and runs: a driver-sent CTO_HARNESS_HOME is ignored and the node's own used."""
    plan = SuitePlan(engine="fake", harness_root=HARNESS_ROOT, suite_dir=tmp_path / "suite",
                     jobs=1, case_ids=("r1-string-slugify",))
    harness = _harness_archive(plan)
    elsewhere = tmp_path / "elsewhere"
    spec = {"harness_version": __version__, "engine": "fake", "suite_token": "t",
            "harness_digest": hashlib.sha256(harness).hexdigest(), "provider": None,
            "case_id": "r1-string-slugify", "repeat": 1, "attempt": 1,
            "suite_settings": {"CTO_HARNESS_HOME": str(elsewhere),
                               "CTO_HARNESS_RUNS_DIR": str(elsewhere / "runs")}}
    result = run_task(spec, [harness], [])
    assert result["ok"] and result["verdict"] == "pass", result.get("message")
    assert not elsewhere.exists()
    node_key = harness_home / "keys" / "evidence-ed25519.pub"
    assert result["public_key"] == node_key.read_bytes()
    # The scratch run is gone from the node; the bundle travelled back as the archive.
    assert not any((Settings.from_env().runs_dir / "ray" / "tasks").iterdir())
    assert result["archive"]


def test_a_task_removes_the_scratch_of_tasks_whose_process_is_gone(
    tmp_path: Path, harness_home: Path
) -> None:
    """A task killed outright leaves its scratch folder; the node's next task removes it, and
    never one whose process still lives (nor anything not named like a task's folder)."""
    plan = SuitePlan(engine="fake", harness_root=HARNESS_ROOT, suite_dir=tmp_path / "suite",
                     jobs=1, case_ids=("r1-string-slugify",))
    harness = _harness_archive(plan)
    tasks = Settings.from_env().runs_dir / "ray" / TASKS
    dead_pid = _exited_pid()
    me = Path(f"/proc/{os.getpid()}/stat").read_bytes().rpartition(b")")[2].split()[19].decode()
    abandoned = tasks / f"{dead_pid}-12345-0123abcd"
    reused = tasks / f"{os.getpid()}-{int(me) + 1}-0123abcd"  # this pid, another process's start
    live = tasks / f"{os.getpid()}-{me}-0123abcd"
    other = tasks / "not-a-task"
    for folder in (abandoned, reused, live, other):
        (folder / "t" / "run" / "workspace").mkdir(parents=True)
    (abandoned / "t" / "run" / "workspace" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "kept.txt").write_text("never reached\n")
    spec = {"harness_version": __version__, "engine": "fake", "suite_token": "t",
            "harness_digest": hashlib.sha256(harness).hexdigest(), "provider": None,
            "case_id": "r1-string-slugify", "repeat": 1, "attempt": 1}
    result = run_task(spec, [harness], [])
    assert result["ok"] and result["verdict"] == "pass", result.get("message")
    assert sorted(p.name for p in tasks.iterdir()) == sorted([live.name, other.name])
    assert (tmp_path / "outside" / "kept.txt").is_file()  # the planted link was not followed


def _exited_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
