"""The model endpoint: an HTTP server on loopback speaking the Anthropic Messages API and the
OpenAI Chat Completions API, streaming or not, in one of three modes.

- `scripted`: answers from a script set (`scripts.py`), the role read from the system prompt.
- `replay`: answers from a cassette by request digest (`cassette.py`); an unseen request is an
  HTTP 400 with the reason, logged, never a guess.
- `record`: forwards each request to a real upstream and writes the exchange into a cassette
  while relaying the response as it streams. The client's own key is never forwarded when the
  operator gives the upstream's key separately (`upstream_headers`); no header is ever written.

It binds 127.0.0.1 only, answers only loopback peers, may require a bearer token (the harness
gives each run its own), and stops by itself: after `idle_timeout` seconds without a request, or
when the process that started it dies (`parent_pid`). Every exchange is one line in the log
(`log_path`): mode, API, role and step (scripted), digest, status, error — never a credential.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cto_harness.modelserver.cassette import (
    Cassette,
    CassetteError,
    CassetteWriter,
    digest_view,
    redact,
    redact_text,
    request_digest,
)
from cto_harness.modelserver.conversation import Api, ConversationError, parse
from cto_harness.modelserver.replies import (
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    assemble_anthropic_stream,
    assemble_openai_stream,
    openai_completion,
    openai_error,
    openai_stream,
    stream_anthropic_message,
    stream_openai_completion,
)
from cto_harness.modelserver.scripts import ScriptError, ScriptSet

Mode = Literal["scripted", "replay", "record"]
LOOPBACK = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024
# The exchange log is evidence the provider shapes (it chooses every request): bounded like the
# provider's own logs, whatever it sends. A row's strings are cut, a view of a request that is
# too large is left out, and past MAX_LOG_BYTES exchanges are counted, not written.
MAX_LOG_BYTES = 32 * 1024 * 1024
_MAX_LOG_TEXT = 2000
_MAX_LOG_VIEW = 64 * 1024
# Request headers a recording proxy passes upstream; everything else (cookies, hop-by-hop) stays.
FORWARDED = ("content-type", "accept", "anthropic-version", "anthropic-beta", "x-api-key",
             "authorization", "openai-organization", "openai-project", "user-agent")
AUTH_HEADERS = ("x-api-key", "authorization")


def upstream_url(upstream: str, path: str) -> str | None:
    """The upstream URL a request target stands for: the upstream's URL and the target, or None
    unless that URL has exactly the upstream's scheme, host and port (and no user), so a target
    can never carry the operator's key to another origin."""
    if api_of(path) is None:
        return None
    url = upstream.rstrip("/") + path
    try:
        base, got = urlsplit(upstream), urlsplit(url)
        same = (got.scheme, got.hostname, got.port) == (base.scheme, base.hostname, base.port)
    except ValueError:  # an invalid port
        return None
    return url if same and not got.username and not got.password else None


def api_of(path: str) -> Api | None:
    """Which API a request target asks for; None for anything but an origin-form target (`/...`)
    (`.evil.example/v1/messages` or `//host/...` would name another host once joined to the
    upstream's URL in record mode)."""
    if not path.startswith("/") or path.startswith("//"):
        return None
    route = path.split("?", 1)[0].rstrip("/")
    if route.endswith("/messages") and not route.endswith("/count_tokens"):
        return "anthropic"
    if route.endswith("/chat/completions"):
        return "openai"
    return None


@dataclass
class EndpointConfig:
    mode: Mode
    scripts: ScriptSet | None = None
    cassette: Cassette | None = None
    record_to: Path | None = None
    upstream: str | None = None
    # Headers the proxy sends upstream instead of the client's auth headers (the real key).
    upstream_headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    volatile: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    log_path: Path | None = None
    idle_timeout: float | None = None
    parent_pid: int | None = None
    port: int = 0

    def check(self) -> None:
        if self.mode == "scripted" and self.scripts is None:
            raise ValueError("scripted mode needs a script set")
        if self.mode == "replay" and self.cassette is None:
            raise ValueError("replay mode needs a cassette")
        if self.mode == "record" and (not self.upstream or self.record_to is None):
            raise ValueError("record mode needs an upstream URL and a cassette to write")


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    last_error: str | None = None
    stopped_because: str | None = None


class ModelEndpoint:
    """`start()` returns the base URL; `stop()` (or idle / parent death) ends it."""

    def __init__(self, config: EndpointConfig) -> None:
        config.check()
        self.config = config
        self.stats = Stats()
        self._writer = (CassetteWriter(config.record_to, config.secrets)
                        if config.mode == "record" and config.record_to else None)
        self._log_lock = threading.Lock()
        self._seq = 0
        self._log_bytes = 0
        self._active = 0
        self._idle = threading.Condition(self._log_lock)
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        if config.log_path is not None:
            config.log_path.parent.mkdir(parents=True, exist_ok=True)
            config.log_path.write_text("", encoding="utf-8")

    # --- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> str:
        endpoint = self

        class Handler(_Handler):
            owner = endpoint

        self._server = _Server((LOOPBACK, self.config.port), Handler)
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="model-endpoint", daemon=True)
        watch = threading.Thread(target=self._watch, name="model-endpoint-watch", daemon=True)
        self._threads = [serve, watch]
        serve.start()
        watch.start()
        return self.url

    def stop(self, reason: str = "stopped", *, drain_seconds: float = 10.0) -> None:
        """Stop accepting, then wait (up to `drain_seconds`) for requests under way to finish
        and log, so that whoever reads the log next sees every exchange."""
        if self._stopped.is_set():
            return
        self.stats.stopped_because = self.stats.stopped_because or reason
        self._stopped.set()
        if self._server is not None:
            if not self._threads or threading.current_thread() is not self._threads[0]:
                self._server.shutdown()  # (never from the serving thread itself: it would hang)
            self._server.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=drain_seconds)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _watch(self) -> None:
        parent = self.config.parent_pid
        while not self._stopped.wait(0.2):
            if parent is not None and not _alive(parent):
                self.stop(f"its parent process {parent} exited")
                return
            idle = self.config.idle_timeout
            if idle is not None and self._active == 0 and time.monotonic() - self._last > idle:
                self.stop(f"idle for {idle:g}s")
                return

    # --- log ----------------------------------------------------------------------------------

    def log(self, row: dict[str, Any]) -> None:
        with self._log_lock:
            self._seq += 1
            self.stats.requests += 1
            if row.get("error"):
                self.stats.errors += 1
                self.stats.last_error = str(row["error"])[:500]
            if self.config.log_path is None or self._log_bytes >= MAX_LOG_BYTES:
                return
            line = json.dumps({"seq": self._seq, "ts": _now(), "mode": self.config.mode,
                               **_bounded(row)}, ensure_ascii=False)
            size = len(line.encode())
            if self._log_bytes + size > MAX_LOG_BYTES - 512:  # room for the closing line
                line = json.dumps({"seq": self._seq, "ts": _now(), "mode": self.config.mode,
                                   "log_cut": f"the log reached {MAX_LOG_BYTES} bytes: later "
                                   "exchanges are counted in the report, not written"})
                size = MAX_LOG_BYTES  # closed: nothing more is written
            self._log_bytes += size
            with open(self.config.log_path, "a", encoding="utf-8") as handle:
                handle.write(redact_text(line, self.config.secrets) + "\n")

    # --- answering ----------------------------------------------------------------------------

    def answer(self, handler: _Handler, api: Api, body: Any) -> None:
        mode = self.config.mode
        if mode == "scripted":
            self._scripted(handler, api, body)
        elif mode == "replay":
            self._replay(handler, api, body)
        else:
            self._record(handler, api, body)

    def _scripted(self, handler: _Handler, api: Api, body: Any) -> None:
        assert self.config.scripts is not None
        started = time.monotonic()
        try:
            conversation = parse(api, body)
            answer = self.config.scripts.answer(conversation)
        except (ConversationError, ScriptError) as exc:
            self.log({"api": api, "path": handler.path, "status": 400, "error": str(exc)})
            handler.fail(api, 400, f"cto-harness scripted endpoint: {exc}")
            return
        handler.reply(api, answer.reply, conversation.model, conversation.stream,
                      usage=bool((body.get("stream_options") or {}).get("include_usage")))
        tools = [c.name for c in answer.reply.tool_calls]
        self.log({"api": api, "path": handler.path, "status": 200, "role": answer.role,
                  "step": answer.step, "tools": tools, "stop_reason": answer.reply.stop_reason,
                  "turn": len(conversation.turns),
                  "ms": int((time.monotonic() - started) * 1000)})

    def _replay(self, handler: _Handler, api: Api, body: Any) -> None:
        assert self.config.cassette is not None
        body = redact(body, self.config.secrets)
        digest = request_digest(handler.route, body, self.config.volatile)
        try:
            recorded = self.config.cassette.take(digest)
        except CassetteError as exc:
            # The question it could not answer, as digested (placeholders in, tool output out):
            # compare it with the cassette's requests to see where the run diverged.
            self.log({"api": api, "path": handler.path, "status": 400, "digest": digest,
                      "error": str(exc),
                      "request": digest_view(body, self.config.volatile)})
            handler.fail(api, 400, f"cto-harness replay endpoint: {exc}")
            return
        message, raw = recorded.restored(self.config.volatile)
        if message is None:
            handler.send_raw(recorded.status, recorded.content_type, [(raw or "").encode()])
        elif api == "anthropic":
            if recorded.stream:
                handler.send_raw(200, "text/event-stream; charset=utf-8",
                                 stream_anthropic_message(message))
            else:
                handler.send_json(200, message)
        elif recorded.stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            handler.send_raw(200, "text/event-stream; charset=utf-8",
                             stream_openai_completion(message, usage=usage))
        else:
            handler.send_json(200, message)
        self.log({"api": api, "path": handler.path, "status": recorded.status, "digest": digest,
                  "recorded_seq": recorded.seq})

    def _record(self, handler: _Handler, api: Api, body: Any) -> None:
        assert self.config.upstream is not None and self._writer is not None
        url = upstream_url(self.config.upstream, handler.path)
        if url is None:  # the operator's credential goes to the upstream's origin, nowhere else
            self.log({"api": api, "path": handler.path, "status": 400,
                      "error": "the target leaves the upstream's origin"})
            handler.fail(api, 400, "cto-harness record endpoint: the request target must be a "
                                   "path on the upstream")
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() in FORWARDED}
        for name in AUTH_HEADERS:
            value = handler.headers.get(name)
            if value:
                self._writer.add_secret(value.removeprefix("Bearer ").strip())
        if self.config.upstream_headers:
            headers = {k: v for k, v in headers.items() if k.lower() not in AUTH_HEADERS}
            headers |= self.config.upstream_headers
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        started = time.monotonic()
        captured: list[bytes] = []
        try:
            try:
                response = urllib.request.urlopen(request, timeout=600)
            except urllib.error.HTTPError as error:
                response = error
            status = response.status if hasattr(response, "status") else response.code
            content_type = response.headers.get("content-type", "application/json")

            read = getattr(response, "read1", None) or response.read

            def relay() -> Iterable[bytes]:
                while chunk := read(65536):
                    captured.append(chunk)
                    yield chunk

            handler.send_raw(status, content_type, relay())
        except (urllib.error.URLError, OSError) as exc:
            self.log({"api": api, "path": handler.path, "status": 502, "error": str(exc)})
            handler.fail(api, 502, f"cto-harness recording proxy: upstream unreachable: {exc}")
            return
        text = b"".join(captured).decode("utf-8", "replace")
        message = None
        if status < 300:
            try:
                if not body.get("stream"):
                    message = json.loads(text)
                elif api == "anthropic":
                    message = assemble_anthropic_stream(text)
                else:
                    message = assemble_openai_stream(text)
            except (ValueError, KeyError, TypeError, IndexError):
                message = None  # kept as the raw body: replayed byte for byte
        try:
            digest: str | None = self._writer.write(
                path=handler.route, body=body, volatile=self.config.volatile, status=status,
                content_type=content_type, response=text,
                message=message if isinstance(message, dict) else None)
            problem = f"upstream answered {status}" if status >= 400 else None
        except CassetteError as exc:
            digest, problem = None, str(exc)
        self.log({"api": api, "path": handler.path, "status": status, "digest": digest,
                  "ms": int((time.monotonic() - started) * 1000),
                  **({"error": problem} if problem else {})})

    def touch(self, delta: int) -> None:
        with self._idle:
            self._active += delta
            self._last = time.monotonic()
            self._idle.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    owner: ModelEndpoint
    protocol_version = "HTTP/1.1"
    timeout = 600  # an idle keep-alive connection is closed after this long
    server_version = "cto-harness-model-endpoint"
    sys_version = ""

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def log_message(self, format: str, *args: Any) -> None:
        return  # the endpoint keeps its own log

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._json(status, payload)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_cto_harness")
        self.end_headers()
        self.wfile.write(data)

    def fail(self, api: Api | None, status: int, message: str) -> None:
        payload = anthropic_error(status, message) if api != "openai" else openai_error(
            status, message)
        self._json(status, payload)

    def send_raw(self, status: int, content_type: str, chunks: Iterable[bytes]) -> None:
        """Send a body of unknown length with chunked transfer encoding, flushing each piece."""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", "req_cto_harness")
        self.end_headers()
        for chunk in chunks:
            if chunk:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def reply(self, api: Api, reply: Reply, model: str, stream: bool, *, usage: bool) -> None:
        created = int(time.time())
        if not stream:
            body = anthropic_message(reply, model) if api == "anthropic" else openai_completion(
                reply, model, created)
            self._json(200, body)
            return
        chunks = anthropic_stream(reply, model) if api == "anthropic" else openai_stream(
            reply, model, created, usage=usage)
        self.send_raw(200, "text/event-stream; charset=utf-8", chunks)

    def _authorized(self) -> bool:
        token = self.owner.config.token
        if token is None:
            return True
        given = self.headers.get("x-api-key") or ""
        bearer = self.headers.get("authorization") or ""
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def do_GET(self) -> None:
        self.fail(api_of(self.path), 404, f"no such endpoint: GET {self.route}")

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    def do_POST(self) -> None:
        owner = self.owner
        owner.touch(+1)
        self._responded = False
        try:
            self._post(owner)
        except Exception as exc:
            # Whatever a request holds (nesting past the parser's depth, a field of the wrong
            # type deep in a conversation) is the provider's: a logged 400, never a traceback
            # on the harness's stderr and an exchange missing from the log.
            what = "the connection failed" if isinstance(exc, OSError) else "malformed request"
            owner.log({"api": api_of(self.path), "path": self.path, "status": 400,
                       "error": f"{what} ({type(exc).__name__})"})
            self.close_connection = True
            if not self._responded:
                with contextlib.suppress(OSError):
                    self.fail(api_of(self.path), 400, "the request is malformed "
                                                      f"({type(exc).__name__})")
        finally:
            owner.touch(-1)

    def _post(self, owner: ModelEndpoint) -> None:
        api = api_of(self.path)
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self.fail(api, 403, "the model endpoint answers loopback clients only")
            return
        if api is None:
            owner.log({"path": self.path, "status": 404, "error": "unsupported API path"})
            self.fail(None, 404, f"no such endpoint: POST {self.route} (served: /v1/messages, "
                                 "/v1/chat/completions)")
            return
        if not self._authorized():
            owner.log({"api": api, "path": self.path, "status": 401, "error": "bad or no key"})
            self.fail(api, 401, "the model endpoint needs this run's key")
            return
        length = int(self.headers.get("content-length") or 0)
        if length <= 0 or length > MAX_BODY:
            self.fail(api, 413 if length > MAX_BODY else 400, "a JSON body is required")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            owner.log({"api": api, "path": self.path, "status": 400, "error": "body not JSON"})
            self.fail(api, 400, "the request body is not JSON")
            return
        if not isinstance(body, dict):
            self.fail(api, 400, "the request body is not a JSON object")
            return
        owner.answer(self, api, body)


def _bounded(row: dict[str, Any]) -> dict[str, Any]:
    """A log row with every string cut to _MAX_LOG_TEXT and a nested value (a request's view)
    larger than _MAX_LOG_VIEW replaced by its size."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, str) and len(value) > _MAX_LOG_TEXT:
            value = value[:_MAX_LOG_TEXT] + "…"
        elif isinstance(value, dict | list):
            size = len(json.dumps(value, ensure_ascii=False))
            if size > _MAX_LOG_VIEW:
                value = f"<{size} characters, left out of the log>"
        out[key] = value
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return True


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def summary(rows: list[dict[str, Any]]) -> Mapping[str, Any]:
    """Counts over an endpoint log: requests, errors, roles seen."""
    return {
        "requests": len(rows),
        "errors": [str(r.get("error"))[:300] for r in rows if r.get("error")][:20],
        "roles": sorted({str(r["role"]) for r in rows if r.get("role")}),
    }
