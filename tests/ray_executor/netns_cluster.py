"""The Ray executor on a real three-node cluster (head + two workers, separate Ray processes, each
worker with its own CTO_HARNESS_HOME), inside a network namespace whose only interface is `lo`.

Not collected by a normal `pytest` run (the file name has no `test_` prefix): `test_multinode.py`
re-executes this file under `unshare --net`. Run it alone the same way:
`unshare --net -- .venv/bin/python -m pytest tests/ray_executor/netns_cluster.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from case_helpers import FAKE_KEY, TEST_MODEL
from conftest import HARNESS_ROOT, REPO_ROOT, AdmittedStandin, CaseFactory
from cto_harness.evidence.suite_signers import keyid_of
from cto_harness.executors.local_cluster import (
    ClusterNode,
    LocalCluster,
    bring_up_loopback,
    interfaces_up,
)
from cto_harness.sandbox.process import stat_fields
from standin_helpers import accept_pin

if os.environ.get("CTO_HARNESS_IN_LOOPBACK_NETNS") != "1":
    pytest.skip("runs only inside the loopback-only namespace of tests/ray_executor/test_multinode.py",
                allow_module_level=True)

LOOPBACK_ADDRESSES = {"0100007F", "0000000000000000FFFF00000100007F",
                      "00000000000000000000000001000000"}


def _pids_with(text: str) -> list[int]:
    """Processes whose command line or environment mentions `text` (the cluster's base path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(entry.name))
    return found


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:300]!r}")
        except OSError:
            out.append(f"{pid}: gone")
    return out


def _wait_exited(pids: list[int], timeout: float) -> list[int]:
    """Wait (on pidfds, no polling) until every pid has exited; returns those still alive."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    try:
        while fds and time.monotonic() < deadline:
            ready, _, _ = select.select(list(fds), [], [], deadline - time.monotonic())
            for fd in ready:
                os.close(fd)
                fds.pop(fd)
        return list(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    bring_up_loopback()
    assert interfaces_up() == ["lo"]
    # Short: Ray's unix socket paths live below it (108-byte limit).
    base = Path(tempfile.mkdtemp(prefix="ctoray-", dir="/tmp"))
    local = LocalCluster(base, workers=2, env={"ANTHROPIC_API_KEY": FAKE_KEY})
    try:
        local.start()
        yield local
    finally:
        local.shutdown()
        leftover = _wait_exited(_pids_with(str(base)), timeout=60)
        assert not leftover, f"processes of the cluster left running: {_describe(leftover)}"
        shutil.rmtree(base, ignore_errors=True)


def _suite(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.Popen[str]:
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT / "src"),
            "RAY_TMPDIR": str(cluster.base)}
    return subprocess.Popen(
        [sys.executable, "-m", "cto_harness", "suite", "--executor", "ray", "--address",
         cluster.address, "--json", *args],
        env=full, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    assert out, f"no suite.json on stdout (exit {proc.returncode}): {err[-3000:]}"
    return proc.returncode, json.loads(out), err


def _verify(run_dir: Path, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cto_harness", "verify", str(run_dir), "--json", *extra],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "CTO_HARNESS_HOME": str(home)},
        capture_output=True, text=True, timeout=120)


def _node_key(node: ClusterNode) -> str:
    return keyid_of(node.home / "keys" / "evidence-ed25519.pub")


def test_the_cluster_listens_on_loopback_only(cluster: LocalCluster) -> None:
    assert interfaces_up() == ["lo"]
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state = fields[1].split(":")[0], fields[3]
            if state == "0A":  # LISTEN
                listening.append(address)
    assert listening, "the cluster opened no listening socket?"
    assert set(listening) <= LOOPBACK_ADDRESSES, listening


def test_suite_over_all_cases_on_two_nodes_verifies(
    cluster: LocalCluster, harness_home: Path, tmp_path: Path
) -> None:
    suite_dir = tmp_path / "suite"
    code, data, err = _finish(_suite(cluster, "--repeat", "2", "--suite-dir", str(suite_dir)))
    assert code == 0, err[-3000:]
    cases = sorted(p.name for p in (HARNESS_ROOT / "evals" / "cases").iterdir())
    assert sorted({r["case_id"] for r in data["runs"]}) == cases
    assert data["executor"] == "ray" and data["complete"] is True
    assert [r["verdict"] for r in data["runs"]] == ["pass"] * 2 * len(cases)
    workers = {w.node_id: w for w in cluster.workers}
    used = {r["node"]["node_id"] for r in data["runs"]}
    assert used == set(workers), "both worker nodes ran runs (none ran on the 0-CPU head)"
    for run in data["runs"]:
        node = workers[run["node"]["node_id"]]
        # Signed on its node, with that node's own key, recorded by the suite.
        assert run["signer"] == _node_key(node)
        assert data["signers"][run["signer"]]["nodes"] == [node.node_id]
        assert run["isolation"] in ("bwrap", "landlock", "none")
        if os.environ.get("CTO_HARNESS_REQUIRE_BWRAP") == "1":
            assert run["isolation"] == "bwrap"
        bundle = suite_dir / run["run_dir"]
        assert not (bundle / "workspace").exists(), "the working copy stays on its node"
        checked = _verify(bundle, harness_home)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["verdict"] == "pass"
    assert harness_home != workers[next(iter(used))].home
    # The node's key is not this machine's: outside the suite, the same bundle is refused.
    loose = tmp_path / "loose"
    shutil.copytree(suite_dir / data["runs"][0]["run_dir"], loose)
    assert _verify(loose, harness_home).returncode == 1
    # Each node's scratch copy of its runs is gone; its harness copy stays (one per digest).
    for node in cluster.workers:
        assert not list((node.home / "harness-runs" / "ray" / "tasks").glob("*/*"))
        assert len(list((node.home / "harness-runs" / "ray" / "harness").iterdir())) == 1

    # Resume works as locally: every verifying bundle is kept, nothing runs again.
    before = sorted(p for p in (suite_dir / "runs").glob("*/*"))
    code, again, err = _finish(_suite(cluster, "--repeat", "2", "--suite-dir", str(suite_dir)))
    assert code == 0, err[-3000:]
    assert all(r["reused"] for r in again["runs"])
    assert sorted(p for p in (suite_dir / "runs").glob("*/*")) == before


def _case_policy_root(tmp_path: Path, standin: AdmittedStandin) -> Path:
    """A harness folder whose provider policy admits the test model and records the stand-in's
    commit as an accepted pin (shipped to the nodes)."""
    root = tmp_path / "harness"
    shutil.copytree(HARNESS_ROOT, root)
    policy = root / "providers" / "case" / "policy.toml"
    with open(policy, "a", encoding="utf-8") as handle:
        handle.write(f'\n[[models]]\nprovider = "{TEST_MODEL[0]}"\nmodel = "{TEST_MODEL[1]}"\n')
    accept_pin(policy, standin.commit)
    return root


def test_tampered_binary_on_one_worker_blocks_there(
    cluster: LocalCluster, admitted_standin: AdmittedStandin, tmp_path: Path
) -> None:
    good, bad = cluster.workers
    genuine = admitted_standin.binary.read_bytes()
    # The bad node's store already holds an entry under the admitted digest, with other bytes.
    entry = bad.home / "providers" / "case" / admitted_standin.sha256
    entry.mkdir(parents=True)
    (entry / "ca").write_bytes(genuine + b"\n# tampered\n")
    (entry / "ca").chmod(0o555)
    tampered = hashlib.sha256((entry / "ca").read_bytes()).hexdigest()

    env = {"CTO_HARNESS_HOME": str(admitted_standin.home),
           "CTO_HARNESS_RUNS_DIR": str(tmp_path / "driver-runs"),
           "CTO_HARNESS_ALLOW_CASE": "1", "CTO_HARNESS_CASE_STAGE": "2",
           "CTO_HARNESS_CASE_BIN": str(admitted_standin.binary),
           "CTO_HARNESS_CASE_MODEL_PROVIDER": TEST_MODEL[0],
           "CTO_HARNESS_CASE_MODEL": TEST_MODEL[1], "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "120"}
    suite_dir = tmp_path / "suite"
    code, data, err = _finish(_suite(
        cluster, "r1-string-slugify", "--engine", "case", "--repeat", "4",
        "--harness-root", str(_case_policy_root(tmp_path, admitted_standin)),
        "--suite-dir", str(suite_dir),
        env=env))
    by_node: dict[str, list[dict]] = {good.node_id: [], bad.node_id: []}
    for run in data["runs"]:
        by_node[run["node"]["node_id"]].append(run)
    assert by_node[good.node_id] and by_node[bad.node_id], "SPREAD put runs on both workers"
    for run in by_node[good.node_id]:
        assert run["verdict"] == "pass", run
    for run in by_node[bad.node_id]:
        assert (run["verdict"], run["blockers"]) == ("blocked", ["provider_not_admitted"]), run
        bundle = suite_dir / run["run_dir"]
        report = json.loads((bundle / "report.json").read_text())
        assert report["case_process_started"] is False
        assert report["provider"]["sha256"] == tampered
        assert (bundle / "backend" / "provider-not-admitted.txt").is_file()
    assert code == 2, err[-3000:]  # blocked, none failed
    for run in data["runs"]:
        assert _verify(suite_dir / run["run_dir"], admitted_standin.home).returncode == 0
    # The good node stored the genuine bytes; the bad node's entry was never quietly repaired.
    stored = good.home / "providers" / "case" / admitted_standin.sha256 / "ca"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == admitted_standin.sha256
    assert (entry / "ca").read_bytes() == genuine + b"\n# tampered\n"
    for node in (good, bad):
        registry = json.loads((node.home / "providers" / "case" / "admissions.json").read_text())
        assert [r["sha256"] for r in registry["admissions"]] == [admitted_standin.sha256]


def _slow_case(case_factory: CaseFactory) -> Path:
    return case_factory(
        "slow-slugify",
        files={"fake/slow.py": "import time\ntime.sleep(5)\n"},
        toml_edit=lambda t: t.replace('overlay = "fake/solution"',
                                      'overlay = "fake/solution"\nscript = "fake/slow.py"'),
    )


def _workspaces(homes: list[Path]) -> set[Path]:
    return {w for h in homes
            for w in (h / "harness-runs" / "ray" / "tasks").glob("*/*/*/workspace")}


def _wait_for_a_run(homes: list[Path], proc: subprocess.Popen[str], before: set[Path]) -> None:
    """Until a new run on one of these nodes has copied its fixture (it is then mid-run). `before`:
    the workspaces there before the suite started (a task killed by an earlier test leaves its
    scratch run behind, which must not count)."""
    deadline = time.monotonic() + 180
    while not _workspaces(homes) - before:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.02)


def test_ctrl_c_mid_suite_then_resume(
    cluster: LocalCluster, case_factory: CaseFactory, harness_home: Path, tmp_path: Path
) -> None:
    root = _slow_case(case_factory)
    suite_dir = tmp_path / "suite"
    args = ("slow-slugify", "--repeat", "3", "--harness-root", str(root), "--suite-dir",
            str(suite_dir))
    before = _workspaces([w.home for w in cluster.workers])
    proc = _suite(cluster, *args)
    _wait_for_a_run([w.home for w in cluster.workers], proc, before)
    proc.send_signal(signal.SIGINT)
    code, data, err = _finish(proc)
    assert code == 3 and data["interrupted"] is True and data["complete"] is False, err[-3000:]
    statuses = {r["status"] for r in data["runs"]}
    assert "interrupted" in statuses and statuses <= {"interrupted", "pending", "done"}
    for run in data["runs"]:
        if run["status"] == "done":
            assert _verify(suite_dir / run["run_dir"], harness_home).returncode == 0
    code, final, err = _finish(_suite(cluster, *args))
    assert code == 0 and final["complete"] is True, err[-3000:]
    assert [r["verdict"] for r in final["runs"]] == ["pass"] * 3


def _parent(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[1])


def _task_workers(base: Path) -> list[int]:
    """This cluster's Ray worker processes busy with our task (Ray titles them
    `ray::run_task`; their environment names their node's home under the cluster's base).
    A child the worker is starting shows the same title until its `exec` (a vfork child shares
    the worker's memory), so a process whose parent is itself listed is not a worker."""
    titled = set()
    for pid in _pids_with(str(base)):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_task"):
                titled.add(pid)
        except OSError:
            continue
    return sorted(pid for pid in titled if _parent(pid) not in titled)


def test_a_killed_task_is_node_lost_then_retried(
    cluster: LocalCluster, case_factory: CaseFactory, harness_home: Path, tmp_path: Path
) -> None:
    root = _slow_case(case_factory)
    suite_dir = tmp_path / "suite"
    before = _workspaces([w.home for w in cluster.workers])
    proc = _suite(cluster, "slow-slugify", "--node-retries", "1", "--harness-root", str(root),
                  "--suite-dir", str(suite_dir))
    _wait_for_a_run([w.home for w in cluster.workers], proc, before)
    # A worker still ending an earlier test's cancelled task may show for a moment: wait for one.
    deadline = time.monotonic() + 60
    while len(busy := _task_workers(cluster.base)) != 1 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    assert len(busy) == 1, _describe(busy)
    fd = os.pidfd_open(busy[0])
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)  # the task's worker process, nothing else
    finally:
        os.close(fd)
    code, data, err = _finish(proc)
    assert code == 0, err[-3000:]
    [run] = data["runs"]
    assert run["verdict"] == "pass" and run["attempts"] == 2
    assert len(run["lost_attempts"]) == 1
    assert _verify(suite_dir / run["run_dir"], harness_home).returncode == 0
    assert len(cluster.workers) == 2  # the nodes themselves lived on


def test_worker_killed_mid_suite_is_node_lost_then_retried(
    cluster: LocalCluster, case_factory: CaseFactory, harness_home: Path, tmp_path: Path
) -> None:
    root = _slow_case(case_factory)
    survivor, doomed = cluster.workers
    suite_dir = tmp_path / "suite"
    before = _workspaces([doomed.home])
    proc = _suite(cluster, "slow-slugify", "--repeat", "2", "--node-retries", "1",
                  "--harness-root", str(root), "--suite-dir", str(suite_dir))
    _wait_for_a_run([doomed.home], proc, before)
    cluster.kill(doomed)  # SIGKILL to its raylet, object store and agents, by pid
    code, data, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert [r["verdict"] for r in data["runs"]] == ["pass", "pass"]
    retried = [r for r in data["runs"] if r["lost_attempts"]]
    assert len(retried) == 1, data["runs"]
    run = retried[0]
    assert run["attempts"] == 2 and run["node"]["node_id"] == survivor.node_id
    assert run["lost_attempts"][0]["attempt"] == 1
    assert "lost its node" in err
    for row in data["runs"]:
        assert _verify(suite_dir / row["run_dir"], harness_home).returncode == 0
    # Nothing of the dead node's run is left running (its sandboxed provider included).
    assert not _wait_exited(_pids_with(str(doomed.home)), timeout=60)
