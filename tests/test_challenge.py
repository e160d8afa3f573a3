"""Freshness a verifier can demand: `run --challenge` binds the verifier's value into the nonce,
the report and the signature; `verify --challenge` / `--run-id` refuse a bundle without it, so
a replayed earlier bundle (or one whose recorded challenge was rewritten) does not verify."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from cto_harness.core.suite_plan import keep_earlier
from cto_harness.evidence.challenge import derive_nonce
from cto_harness.evidence.signing import load_or_create_key, sign_bundle

CASE = "r1-string-slugify"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], env=env, text=True,
                          capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real runs in one home: one given a challenge, one not (a would-be replay)."""
    home = tmp_path_factory.mktemp("challenge-home")
    saved = {k: os.environ.get(k) for k in ("CTO_HARNESS_HOME", "CTO_HARNESS_RUNS_DIR")}
    os.environ["CTO_HARNESS_HOME"] = str(home)
    os.environ["CTO_HARNESS_RUNS_DIR"] = str(home / "runs")
    try:
        made = {}
        for name, extra in (("challenged", ["--challenge", "verifier-7f3a ok"]), ("plain", [])):
            proc = _cli("run", CASE, "--json", *extra)
            assert proc.returncode == 0, proc.stderr
            made[name] = Path(json.loads(proc.stdout)["run_dir"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    made["home"] = home
    return made


def _verify(bundles: dict[str, Path], bundle: Path, *args: str
            ) -> subprocess.CompletedProcess[str]:
    key = bundles["home"] / "keys" / "evidence-ed25519.pub"
    return _cli("verify", str(bundle), "--public-key", str(key), *args)


def test_the_challenge_is_bound_into_nonce_report_and_signature(
    bundles: dict[str, Path]
) -> None:
    bundle = bundles["challenged"]
    report = json.loads((bundle / "report.json").read_text())
    fresh = report["freshness"]
    assert fresh["challenge"] == "verifier-7f3a ok"
    assert report["nonce"] == derive_nonce("verifier-7f3a ok", fresh["challenge_salt"])
    assert json.loads((bundle / "freshness.json").read_text())["challenge"] == "verifier-7f3a ok"
    envelope = json.loads((bundle / "evidence.dsse.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["challenge"] == "verifier-7f3a ok"
    ok = _verify(bundles, bundle, "--challenge", "verifier-7f3a ok", "--run-id",
                 report["run_id"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _verify(bundles, bundle).returncode == 0  # no demand: still a good bundle


def test_verify_refuses_another_challenge_a_replay_and_another_run_id(
    bundles: dict[str, Path]
) -> None:
    wrong = _verify(bundles, bundles["challenged"], "--challenge", "verifier-other")
    assert wrong.returncode == 1 and "another" in wrong.stderr
    # A complete earlier bundle made before the verifier chose its value: refused.
    replay = _verify(bundles, bundles["plain"], "--challenge", "verifier-7f3a ok")
    assert replay.returncode == 1 and "does not carry the demanded challenge" in replay.stderr
    other = _verify(bundles, bundles["plain"], "--run-id", "20990101T000000Z-x-deadbeef")
    assert other.returncode == 1 and "not the demanded" in other.stderr


def test_a_rewritten_challenge_does_not_give_the_nonce(bundles: dict[str, Path],
                                                       tmp_path: Path) -> None:
    bundle = tmp_path / "forged"
    shutil.copytree(bundles["plain"], bundle)
    # The forger writes the demanded value into both records, re-lists every digest and (as
    # a thief of the harness's key could) signs again: only the nonce can no longer agree.
    report = json.loads((bundle / "report.json").read_text())
    report["freshness"].update(challenge="verifier-7f3a ok", challenge_salt="00" * 16)
    (bundle / "report.json").write_text(json.dumps(report))
    lines = (bundle / "artifacts.sha256").read_text().splitlines()
    relisted = []
    for line in lines:
        rel = line.split("  ", 1)[1]
        relisted.append(f"{hashlib.sha256((bundle / rel).read_bytes()).hexdigest()}  {rel}\n")
    (bundle / "artifacts.sha256").write_text("".join(relisted))
    fresh = json.loads((bundle / "freshness.json").read_text())
    fresh.update(challenge="verifier-7f3a ok", challenge_salt="00" * 16,
                 artifacts_manifest_sha256=hashlib.sha256(
                     (bundle / "artifacts.sha256").read_bytes()).hexdigest())
    (bundle / "freshness.json").write_text(json.dumps(fresh))
    proc = _verify(bundles, bundle, "--challenge", "verifier-7f3a ok")
    assert proc.returncode == 1 and "not the file that was signed" in proc.stderr
    sign_bundle(bundle, load_or_create_key(bundles["home"] / "keys"), {"resigned": True})
    proc = _verify(bundles, bundle, "--challenge", "verifier-7f3a ok")
    assert proc.returncode == 1
    assert "not derived from the recorded challenge" in proc.stderr


def test_usage_and_suite_reuse() -> None:
    bad = _cli("run", CASE, "--challenge", "line\nbreak")
    assert bad.returncode == 64 and "printable" in bad.stderr
    record = {"verdict": "pass", "interrupted": False, "challenge": "a"}
    assert keep_earlier(record, fresh=False, challenge="a")
    assert not keep_earlier(record, fresh=False, challenge="b")
    assert not keep_earlier({**record, "challenge": None}, fresh=False, challenge="a")
