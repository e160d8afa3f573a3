"""`view --serve`: the generated pages and the bundle files they link to, on 127.0.0.1 only.

Nothing else is served: a request must name one of the generated pages or one of the bundle
files a page links to (an allow-list built while rendering). Every request path is split into
segments and walked from its root one segment at a time with `lstat`: a symlink anywhere, a
`..`, an encoded slash or NUL, or anything but a regular file at the end is a 404, so no request
can reach outside its root (by construction, not by a check on the final path). Bundle files go
out as plain text with `nosniff` and a sandboxing CSP, so a provider's file can never run as a
page. The Host header must name this server, which shuts out DNS rebinding.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"
_PAGE_TYPES = {".html": "text/html; charset=utf-8"}
_FILE_CSP = "default-src 'none'; sandbox"
_PAGE_CSP_HEADER = "frame-ancestors 'none'"
_MAX_FILE = 256 << 20


def resolve_request(root: Path, segments: list[str]) -> Path | None:
    """The regular file `root/<segments>` reached through real directories, else None."""
    current = root
    for segment in segments:
        if segment in ("", ".", "..") or "/" in segment or "\0" in segment or "\\" in segment:
            return None
        current = current / segment
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    try:
        mode = os.lstat(current).st_mode
    except OSError:
        return None
    return current if stat.S_ISREG(mode) else None


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "cto-harness-view"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet: the URL is the output
        return

    def _route(self) -> tuple[Path | None, bool]:
        """The file for this request and whether it is a generated page."""
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            return None, False
        # Split before decoding, so an encoded "/" (%2F) stays inside one segment and is refused.
        segments = [unquote(s, errors="strict") for s in raw[1:].split("/")]
        if segments == [""]:
            segments = [self.server.index.name]
        if segments[0] == "files":
            if len(segments) < 3 or segments[1] not in self.server.mounts:
                return None, False
            path = resolve_request(self.server.mounts[segments[1]], segments[2:])
            return (path, False) if path in self.server.files else (None, False)
        path = resolve_request(self.server.root, segments)
        return (path, True) if path in self.server.pages else (None, True)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        return host in (f"{HOST}:{port}", f"localhost:{port}")

    def _send(self, head_only: bool) -> None:
        if not self._host_ok():
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unknown host")
            return
        try:
            path, is_page = self._route()
        except UnicodeDecodeError:
            path, is_page = None, False
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            # O_NOFOLLOW: the last segment cannot have become a link since it was checked.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode) or size > _MAX_FILE:
                self.send_error(HTTPStatus.NOT_FOUND, "not found")
                return
            body = b"" if head_only else handle.read(size)
        self.send_response(HTTPStatus.OK)
        if is_page and path.suffix in _PAGE_TYPES:
            self.send_header("Content-Type", _PAGE_TYPES[path.suffix])
            self.send_header("Content-Security-Policy", _PAGE_CSP_HEADER)
        else:
            # A bundle file is data, whatever its name: never a page, never a script.
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Security-Policy", _FILE_CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(head_only=False)

    def do_HEAD(self) -> None:
        self._send(head_only=True)


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, index: Path, pages: Iterable[Path], mounts: dict[str, Path],
                 files: Iterable[Path], port: int = 0) -> None:
        self.index = index.absolute()
        self.root = self.index.parent
        self.pages = frozenset(p.absolute() for p in pages)
        self.mounts = {name: root.absolute() for name, root in mounts.items()}
        self.files = frozenset(f.absolute() for f in files)
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/{self.index.name}"


@contextmanager
def serving(index: Path, pages: Iterable[Path], mounts: dict[str, Path], files: Iterable[Path],
            port: int = 0) -> Iterator[ViewServer]:
    """A server on a background thread for the duration of the block."""
    server = ViewServer(index, pages, mounts, files, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
