"""`cto-harness model serve` as a process: it prints its URL, answers, and stops by itself when
its parent dies or on SIGTERM (exit 0); bad arguments are usage errors (64)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HAPPY = REPO_ROOT / "harness" / "model-scripts" / "r1-string-slugify" / "happy"
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cto_harness", "model", "serve", *args],
                            env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def ask(url: str, key: str | None = None) -> int:
    body = {"model": "m", "max_tokens": 10, "system": "# Retrospective — x",
            "messages": [{"role": "user", "content": "- **Task file**: `/w/t.md`"}],
            "tools": [{"name": "bash", "input_schema": {}}]}
    request = urllib.request.Request(url + "/v1/messages", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **({"x-api-key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    process = serve("--mode", "scripted", "--scripts", str(HAPPY), "--url-file", str(url_file),
                    env={**ENV, "CTO_HARNESS_MODEL_TOKEN": "cli-key-123456"})
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("cto-harness model: scripted endpoint on http://127.0.0.1:")
        url = url_file.read_text().strip()
        assert line.strip().endswith(url)
        assert ask(url) == 401
        assert ask(url, "cli-key-123456") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped (signal SIGTERM); 2 requests" in err


def test_stops_when_its_parent_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sleep", "600"])
    process = serve("--mode", "scripted", "--scripts", str(HAPPY), "--parent-pid",
                    str(parent.pid))
    try:
        assert process.stdout is not None and "endpoint on" in process.stdout.readline()
        parent.kill()
        parent.wait()
        _out, err = process.communicate(timeout=60)  # returns once the endpoint exits
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert f"its parent process {parent.pid} exited" in err


@pytest.mark.parametrize("args, fragment", [
    (["--mode", "scripted"], "needs --scripts"),
    (["--mode", "replay"], "needs --cassette"),
    (["--mode", "record", "--cassette", "x.jsonl"], "needs --upstream"),
    (["--mode", "scripted", "--scripts", "/nonexistent/set"], "no script set"),
    (["--mode", "scripted", "--scripts", str(HAPPY), "--volatile", "lower=x"], "NAME=VALUE"),
    (["--mode", "mock"], "invalid choice"),
])
def test_usage_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    process = serve(*args)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 64, err
    assert fragment in err


def test_replay_of_an_unreadable_cassette_is_a_usage_error(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    cassette.write_text('{"schema": "something-else"}\n')
    process = serve("--mode", "replay", "--cassette", str(cassette))
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 64 and "not a cassette line" in err
