"""`verify` of a run signed on another node: accepted only when the suite holding it endorsed that
key for that run and that manifest with the trusted key; refused outside the suite, without the
endorsement, with an endorsement by another key, and for another bundle of the same node. Also
the usage errors of `--executor`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness.core.run import execute_run
from cto_harness.core.suite import read_bundle
from cto_harness.evidence.signing import PAYLOAD_TYPE, key_id, load_or_create_key, pae
from cto_harness.evidence.suite_signers import (
    SIGNERS_FILE,
    SIGNERS_TYPE,
    endorse,
    store_public_key,
)
from cto_harness.settings import Settings


def _node_run(node_home: Path, run_dir: Path) -> None:
    """A fake run signed with `node_home`'s key (another machine's, as far as we are concerned)."""
    env = {**os.environ, "CTO_HARNESS_HOME": str(node_home),
           "CTO_HARNESS_RUNS_DIR": str(node_home / "runs")}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    result = execute_run("r1-string-slugify", "fake", harness_root=HARNESS_ROOT,
                         settings=Settings.from_env(env), environ=env, run_dir=run_dir)
    assert result.report.verdict == "pass"


def _verify(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "cto_harness", "verify", str(run_dir), *extra],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def node_suite(tmp_path: Path, harness_home: Path) -> tuple[Path, Path, Path]:
    """(suite dir, run dir, node home): one node-signed run recorded and endorsed as the Ray
    executor records it."""
    node_home = tmp_path / "node-home"
    suite_dir = tmp_path / "suite"
    run_dir = suite_dir / "runs" / "r1-string-slugify" / "r001"
    _node_run(node_home, run_dir)
    (suite_dir / "suite.json").write_text('{"schema": "cto-harness.suite/1"}\n')
    _keyid, key = store_public_key(suite_dir, (node_home / "keys" / "evidence-ed25519.pub")
                                   .read_bytes())
    record = read_bundle(run_dir, key)
    assert record is not None
    endorse(suite_dir, [{**record, "run_dir": "runs/r1-string-slugify/r001"}],
            harness_home / "keys")
    return suite_dir, run_dir, node_home


def test_a_node_signed_run_verifies_inside_its_suite(node_suite: tuple[Path, Path, Path]) -> None:
    suite_dir, run_dir, _ = node_suite
    done = _verify(run_dir)
    assert done.returncode == 0, done.stderr
    assert _verify(run_dir, "--suite", str(suite_dir)).returncode == 0


def test_outside_its_suite_the_node_key_is_refused(
    node_suite: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _suite_dir, run_dir, node_home = node_suite
    loose = tmp_path / "loose"
    shutil.copytree(run_dir, loose, ignore=shutil.ignore_patterns("workspace"))
    assert _verify(loose).returncode == 1
    # ...but its own key (given explicitly) still checks it, as before.
    assert _verify(loose, "--public-key",
                   str(node_home / "keys" / "evidence-ed25519.pub")).returncode == 0


def test_without_the_endorsement_the_node_key_is_refused(
    node_suite: tuple[Path, Path, Path]
) -> None:
    suite_dir, run_dir, _ = node_suite
    (suite_dir / SIGNERS_FILE).unlink()
    done = _verify(run_dir)
    assert done.returncode == 1 and "does not vouch" in done.stderr


def test_an_endorsement_by_another_key_is_refused(node_suite: tuple[Path, Path, Path]) -> None:
    suite_dir, run_dir, node_home = node_suite
    # Whoever holds the node's key (not the suite machine's) rewrites the endorsement.
    record = read_bundle(run_dir, node_home / "keys" / "evidence-ed25519.pub")
    assert record is not None
    endorse(suite_dir, [{**record, "run_dir": "runs/r1-string-slugify/r001"}],
            node_home / "keys")
    assert _verify(run_dir).returncode == 1


def test_another_bundle_of_the_same_node_is_refused(
    node_suite: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _suite_dir, run_dir, node_home = node_suite
    other = tmp_path / "other" / "r001"
    _node_run(node_home, other)  # validly signed by the same node, but not the endorsed run
    shutil.rmtree(run_dir)
    shutil.copytree(other, run_dir)
    done = _verify(run_dir)
    assert done.returncode == 1 and "manifest" in done.stderr


def _sign_signers(suite_dir: Path, keys_dir: Path, statement: object) -> None:
    """signers.dsse.json over any statement, signed with the key in `keys_dir`."""
    key = load_or_create_key(keys_dir)
    payload = json.dumps(statement).encode()
    (suite_dir / SIGNERS_FILE).write_text(json.dumps({
        "payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(
            key.sign(pae(PAYLOAD_TYPE, payload))).decode()}]}))


@pytest.mark.parametrize("damage", ["byte_after_the_key", "key_is_a_fifo", "deep_signers",
                                    "deep_envelope", "signed_wrong_shape"])
def test_a_damaged_suite_record_is_a_failed_check_not_a_crash(
    node_suite: tuple[Path, Path, Path], damage: str, harness_home: Path
) -> None:
    # The suite's records are read to find the key, before the bundle's signature is checked:
    # each malformed one must be a named failure (exit 1), never a traceback or a hang.
    suite_dir, run_dir, _ = node_suite
    (key,) = (suite_dir / "keys").iterdir()
    if damage == "byte_after_the_key":
        key.write_bytes(key.read_bytes() + b"\xff")  # still a PEM key; no longer ASCII
    elif damage == "key_is_a_fifo":
        key.unlink()
        os.mkfifo(key)
    elif damage == "deep_signers":
        (suite_dir / SIGNERS_FILE).write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "signed_wrong_shape":  # by the trusted key itself: "runs" is not a mapping
        _sign_signers(suite_dir, harness_home / "keys",
                      {"_type": SIGNERS_TYPE, "runs": ["runs/r1-string-slugify/r001"]})
    else:  # the bundle's envelope names the signer: read to find the key
        (run_dir / "evidence.dsse.json").write_text("[" * 100_000 + "]" * 100_000)
    done = _verify(run_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, \
        done.stderr


def _cli(*args: str, pythonpath: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_executor_usage_errors(tmp_path: Path) -> None:
    src = str(REPO_ROOT / "src")
    # Ray missing (an import that fails, first on the path): a usage error naming the extra.
    stub = tmp_path / "no-ray" / "ray"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no ray here')\n")
    done = _cli("suite", "--executor", "ray", "--suite-dir", str(tmp_path / "s"),
                pythonpath=f"{stub.parent}{os.pathsep}{src}")
    assert done.returncode == 64 and "cto-harness[ray]" in done.stderr, done.stderr
    assert not (tmp_path / "s").exists()
    done = _cli("suite", "--address", "127.0.0.1:1", "--suite-dir", str(tmp_path / "s"),
                pythonpath=src)
    assert done.returncode == 64 and "--executor ray" in done.stderr
    done = _cli("suite", "--executor", "nowhere", pythonpath=src)
    assert done.returncode == 64


def test_the_viewer_and_history_check_follows_the_suite(
    node_suite: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from cto_harness.evidence.bundlecheck import check_bundle

    suite_dir, run_dir, _ = node_suite
    check = check_bundle(run_dir)
    assert check.ok, check
    assert any("vouches for" in line for line in check.checked)
    (suite_dir / SIGNERS_FILE).unlink()
    assert not check_bundle(run_dir).ok
