"""Cassettes: model exchanges recorded as JSON lines, and served back by request digest.

A cassette line is one exchange: the API path, the request body as the model saw it (with the
run's own paths and ids replaced by placeholders), its digest, and the response: for a success,
the complete message the upstream's stream (or JSON body) carried, every block of it (text,
thinking and its signature, tool calls), with the same placeholders; for anything else the body
as sent. On replay the placeholders take the replaying run's values and the message is streamed
again event by event — so an answer that quotes the recorded run's paths (models do) points at
the new run's. No header is ever written, so no credential header can be; every value given as a
secret (the caller's key, the environment's credential values) is replaced by `[REDACTED]` in
whatever is written.

The digest identifies "the same question": the API path and the request body (secrets
redacted first), canonical JSON, with (1) the run's volatile values (its directory, workspace,
task id: different every run) replaced by named placeholders and (2) the text of tool results
left out — it holds times, durations and commit ids that differ between two runs of the same
conversation. What the model
said (its earlier turns, tool calls and their ids), the prompts, the tools offered and every
parameter are all in it. A replayed run therefore gets the recorded answers exactly as long as
it asks the recorded questions; the first question it did not record fails loudly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "cto-harness-cassette/1"
TOOL_OUTPUT = "<tool output: not part of the digest>"
REDACTED = "[REDACTED]"
# Every request the provider sends through a recording proxy is written whole: a bound, so that
# it cannot fill the disk with them (what is past it is not recorded, and the log says so).
MAX_CASSETTE_BYTES = 256 * 1024 * 1024


class CassetteError(ValueError):
    """A cassette that cannot be read, or a request it does not hold."""


def _replace_strings(value: Any, replace: Any) -> Any:
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        return [_replace_strings(v, replace) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v, replace) for k, v in value.items()}
    return value


def placeholder_text(text: str, volatile: Mapping[str, str]) -> str:
    """Replace each volatile value (longest first) by `<<NAME>>`."""
    for name, value in sorted(volatile.items(), key=lambda kv: len(kv[1]), reverse=True):
        if value:
            text = text.replace(value, f"<<{name}>>")
    return text


def restore_text(text: str, volatile: Mapping[str, str]) -> str:
    """The inverse of `placeholder_text` for this run's values."""
    for name, value in volatile.items():
        text = text.replace(f"<<{name}>>", value)
    return text


def restore(value: Any, volatile: Mapping[str, str]) -> Any:
    return _replace_strings(value, lambda s: restore_text(s, volatile))


def redact_text(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact(value: Any, secrets: Sequence[str]) -> Any:
    return _replace_strings(value, lambda s: redact_text(s, secrets))


def normalize(body: Any, volatile: Mapping[str, str]) -> Any:
    """The body with the run's volatile values replaced by placeholders."""
    return _replace_strings(body, lambda s: placeholder_text(s, volatile))


def _without_tool_output(body: Any) -> Any:
    view = copy.deepcopy(body)
    if not isinstance(view, dict):
        return view
    for message in view.get("messages") or []:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":  # OpenAI
            message["content"] = TOOL_OUTPUT
        content = message.get("content")
        if isinstance(content, list):  # Anthropic
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    block["content"] = TOOL_OUTPUT
    return view


def digest_view(body: Any, volatile: Mapping[str, str]) -> Any:
    """Exactly what the digest covers of a body (placeholders in, tool output out)."""
    return _without_tool_output(normalize(body, volatile))


def request_digest(path: str, body: Any, volatile: Mapping[str, str]) -> str:
    view = digest_view(body, volatile)
    canonical = json.dumps({"path": path, "body": view}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Recorded:
    seq: int
    digest: str
    path: str
    status: int
    content_type: str
    stream: bool
    message: dict[str, Any] | None  # a success: the whole message, placeholders in
    body: str | None  # anything else: the body as sent, placeholders in

    def restored(self, volatile: Mapping[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        return (restore(self.message, volatile) if self.message is not None else None,
                restore_text(self.body, volatile) if self.body is not None else None)


class CassetteWriter:
    """Appends exchanges to a JSONL file (created fresh), one line each, thread-safe."""

    def __init__(self, path: Path, secrets: Sequence[str] = (),
                 limit: int = MAX_CASSETTE_BYTES) -> None:
        self.path = path
        self.secrets = list(secrets)
        self.limit = limit
        self._bytes = 0
        self._lock = threading.Lock()
        self._seq = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def add_secret(self, value: str) -> None:
        with self._lock:
            if value and value not in self.secrets:
                self.secrets.append(value)

    def write(self, *, path: str, body: Any, volatile: Mapping[str, str], status: int,
              content_type: str, response: str, message: dict[str, Any] | None) -> str:
        """One exchange; `message` is the assembled success message (None: keep the body).
        The digest is taken of the redacted request: nothing written derives from a secret.
        CassetteError when the cassette would grow past its limit (nothing is written)."""
        body = redact(body, self.secrets)
        digest = request_digest(path, body, volatile)
        answer: dict[str, Any] = {"status": status, "content_type": content_type,
                                  "stream": bool(body.get("stream")) if isinstance(body, dict)
                                  else False}
        if message is not None:
            answer["message"] = normalize(message, volatile)
        else:
            answer["body"] = placeholder_text(response, volatile)
        with self._lock:
            self._seq += 1
            row = {
                "schema": SCHEMA, "seq": self._seq, "digest": digest, "path": path,
                "request": normalize(body, volatile), "response": answer,
            }
            line = redact_text(json.dumps(row, ensure_ascii=False), self.secrets) + "\n"
            size = len(line.encode())
            if self._bytes + size > self.limit:
                self._seq -= 1
                raise CassetteError(f"the cassette reached its limit of {self.limit} bytes: "
                                    "this exchange was not recorded")
            self._bytes += size
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
        return digest


class Cassette:
    """A recorded cassette, served by digest: the k-th identical request gets the k-th recorded
    answer to it; one request more than recorded is unseen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Recorded]] = {}
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CassetteError(f"cannot read cassette {path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if row.get("schema") != SCHEMA:
                    raise ValueError(f"schema {row.get('schema')!r}, expected {SCHEMA!r}")
                response = row["response"]
                message, body = response.get("message"), response.get("body")
                if (message is None) == (body is None) or \
                        (message is not None and not isinstance(message, dict)):
                    raise ValueError("a response holds either a message or a body")
                entry = Recorded(int(row["seq"]), str(row["digest"]), str(row["path"]),
                                 int(response["status"]), str(response["content_type"]),
                                 bool(response.get("stream")), message,
                                 None if body is None else str(body))
            except (ValueError, KeyError, TypeError) as exc:
                raise CassetteError(f"{path}:{number}: not a cassette line ({exc})") from None
            self.entries.setdefault(entry.digest, []).append(entry)
        if not self.entries:
            raise CassetteError(f"cassette {path} holds no exchange")
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def take(self, digest: str) -> Recorded:
        with self._lock:
            served = self._served.get(digest, 0)
            recorded = self.entries.get(digest, [])
            if served >= len(recorded):
                what = ("never recorded" if not recorded else
                        f"recorded {len(recorded)} time(s), already served")
                raise CassetteError(f"unseen request {digest[:16]}…: {what} in {self.path.name}")
            self._served[digest] = served + 1
            return recorded[served]
