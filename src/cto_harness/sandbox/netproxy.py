"""Network by allow-list: the one endpoint a sandbox may reach, through a harness-owned proxy.

The provider runs in a network namespace of its own with loopback only. Inside it, a forwarder
(`FORWARDER_CODE`, run as the sandbox uid in front of the provider) listens on `127.0.0.1:<port>`
and carries each connection to a Unix socket that the harness's `EndpointProxy` serves from
outside the namespace; the proxy opens the single allowed upstream connection and logs every
connection (phase, host, port, bytes each way, start, end, result) to `backend/network.jsonl`.
Nothing else leaves the namespace: not another host, not `git://`, not a service on the host's own
loopback (127.0.0.1 inside is the sandbox's own).

Two ways in, by the endpoint's scheme:

- `http://host:port/path` (a gateway; in tests a scripted server on loopback): **forward**. The
  provider is pointed at `http://127.0.0.1:<port>/path` (Case: `models.json` `baseUrl`), where
  `<port>` is the endpoint's own when it is >= 1024 (so a loopback endpoint keeps its Host header),
  else 8080; the proxy copies bytes to the endpoint unchanged.
- `https://host:port/…`, and a model with no base URL (its provider's public API, `DEFAULT_ENDPOINTS`):
  **connect**. The provider keeps the real URL and gets `HTTPS_PROXY=http://127.0.0.1:<port>`; the
  proxy accepts exactly `CONNECT <host>:<port>` for the allowed pair and tunnels it, so TLS runs
  end to end between the provider and the endpoint. Any other CONNECT target is refused (403) and
  logged as refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cto_harness.clock import iso, utc_now

# The public endpoints of the model providers Case supports, for a model admitted without a base
# URL (Case then uses its provider's default).
DEFAULT_ENDPOINTS = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "google": "https://generativelanguage.googleapis.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "openrouter": "https://openrouter.ai/api/v1",
}
FALLBACK_PORT = 8080
_CHUNK = 1 << 16
_MAX_CONNECT_HEAD = 8192
_UPSTREAM_TIMEOUT = 15.0


@dataclass(frozen=True)
class Endpoint:
    """The one upstream a sandbox may reach, and how the sandbox reaches it."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(url=url, scheme=parts.scheme, host=parts.hostname, port=port,
                   path=parts.path.rstrip("/"))

    @property
    def mode(self) -> str:
        return "connect" if self.scheme == "https" else "forward"

    @property
    def sandbox_port(self) -> int:
        return self.port if self.port >= 1024 else FALLBACK_PORT

    @property
    def sandbox_url(self) -> str:
        """What the provider is told to use inside the sandbox."""
        if self.mode == "connect":
            return self.url
        return f"http://127.0.0.1:{self.sandbox_port}{self.path}"

    def sandbox_env(self) -> dict[str, str]:
        """Environment the provider needs to reach the endpoint (connect mode: a proxy)."""
        if self.mode != "connect":
            return {}
        proxy = f"http://127.0.0.1:{self.sandbox_port}"
        return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": "",
                "NODE_USE_ENV_PROXY": "1"}

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "host": self.host, "port": self.port, "mode": self.mode,
                "sandbox_url": self.sandbox_url, "sandbox_port": self.sandbox_port}


def model_endpoint(base_url: str | None, model_provider: str | None) -> str | None:
    """The URL a model is reached at: its admitted base URL, else its provider's public API."""
    return base_url or DEFAULT_ENDPOINTS.get(model_provider or "")


def endpoint_for(url: str | None) -> Endpoint | None:
    return Endpoint.parse(url) if url else None


def sandbox_base_url(base_url: str | None) -> str | None:
    """The base URL a provider must be given inside the sandbox for an admitted `base_url`."""
    return Endpoint.parse(base_url).sandbox_url if base_url else None


@dataclass
class Connection:
    seq: int
    phase: str
    started_at: str
    host: str
    port: int
    mode: str
    ended_at: str | None = None
    bytes_to_endpoint: int = 0
    bytes_from_endpoint: int = 0
    result: str = "open"
    error: str | None = None
    requested: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class EndpointProxy:
    """The harness side: a Unix socket the sandbox's forwarder connects to, one upstream."""

    endpoint: Endpoint
    socket_path: Path
    phase: str = "canary"
    connections: list[Connection] = field(default_factory=list)
    _server: socket.socket | None = field(default=None, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _open: set[socket.socket] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def start(self, owner: tuple[int, int] | None) -> None:
        """Listen; only `owner` (the sandbox uid) may connect to the socket."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o755)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        if owner is not None:
            os.lchown(self.socket_path, *owner)
        os.chmod(self.socket_path, 0o600)
        server.listen(64)
        self._server = server
        thread = threading.Thread(target=self._accept, name="cto-endpoint-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                if self._stopped:
                    client.close()
                    return
                record = Connection(seq=len(self.connections) + 1, phase=self.phase,
                                    started_at=iso(utc_now()), host=self.endpoint.host,
                                    port=self.endpoint.port, mode=self.endpoint.mode)
                self.connections.append(record)
                self._open.add(client)
            thread = threading.Thread(target=self._serve, args=(client, record), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, client: socket.socket, record: Connection) -> None:
        upstream: socket.socket | None = None
        try:
            early = b""
            if self.endpoint.mode == "connect":
                head = self._read_connect(client, record)
                if head is None:
                    return
                early = head
            try:
                upstream = socket.create_connection((self.endpoint.host, self.endpoint.port),
                                                    timeout=_UPSTREAM_TIMEOUT)
            except OSError as exc:
                record.result, record.error = "upstream_unreachable", str(exc)[:200]
                if self.endpoint.mode == "connect":
                    with contextlib.suppress(OSError):
                        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            upstream.settimeout(None)
            with self._lock:
                self._open.add(upstream)
            if self.endpoint.mode == "connect":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                upstream.sendall(early)
                record.bytes_to_endpoint += len(early)
            self._pump(client, upstream, record)
            record.result = "closed"
        except OSError as exc:
            record.result, record.error = "error", str(exc)[:200]
        finally:
            record.ended_at = iso(utc_now())
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    sock.close()

    def _read_connect(self, client: socket.socket, record: Connection) -> bytes | None:
        """The CONNECT request head; None (after a refusal) unless it names the endpoint."""
        head = b""
        client.settimeout(_UPSTREAM_TIMEOUT)
        while b"\r\n\r\n" not in head and len(head) < _MAX_CONNECT_HEAD:
            chunk = client.recv(4096)
            if not chunk:
                break
            head += chunk
        client.settimeout(None)
        line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = line.split()
        target = parts[1] if len(parts) == 3 and parts[0].upper() == "CONNECT" else None
        record.requested = (target or line)[:200]
        wanted = f"{self.endpoint.host}:{self.endpoint.port}"
        if target is None or target.lower() != wanted.lower():
            record.result = "refused"
            record.error = f"only CONNECT {wanted} is allowed"
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return None
        return head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket, record: Connection) -> None:
        peers = {client: upstream, upstream: client}
        open_reads = {client, upstream}
        while open_reads:
            ready, _, _ = select.select(list(open_reads), [], [])
            for sock in ready:
                data = sock.recv(_CHUNK)
                other = peers[sock]
                if not data:
                    open_reads.discard(sock)
                    with contextlib.suppress(OSError):
                        other.shutdown(socket.SHUT_WR)
                    continue
                other.sendall(data)
                if sock is client:
                    record.bytes_to_endpoint += len(data)
                else:
                    record.bytes_from_endpoint += len(data)

    def stop(self, log_path: Path | None) -> list[dict[str, Any]]:
        """Close everything, wait for the handlers, write the log; returns its records."""
        with self._lock:
            self._stopped = True
            open_now = list(self._open)
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with contextlib.suppress(OSError):
            self.socket_path.parent.rmdir()
        rows = [c.to_dict() for c in self.connections]
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows),
                                encoding="utf-8")
        return rows


# Runs inside the sandbox as the sandbox uid: `python -I -S -c FORWARDER_CODE SPEC -- argv…`.
# Listens first, then starts argv as its child and ends with argv's exit status.
FORWARDER_CODE = r"""
import json, os, socket, sys, threading
spec = json.loads(sys.argv[1])
argv = sys.argv[3:]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", spec["port"]))
server.listen(64)

def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(conn):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        up.connect(spec["socket"])
    except OSError:
        conn.close()
        up.close()
        return
    back = threading.Thread(target=pump, args=(up, conn), daemon=True)
    back.start()
    pump(conn, up)
    back.join()
    conn.close()
    up.close()

def accept():
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

child = os.fork()
if child == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
threading.Thread(target=accept, daemon=True).start()
_, status = os.waitpid(child, 0)
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""
