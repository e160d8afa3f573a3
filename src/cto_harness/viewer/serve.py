"""`view --serve`: the generated pages and the bundle files they link to, on 127.0.0.1 only.

Nothing else is served: a request must name one of the generated pages or one of the bundle
files a page links to (an allow-list built while rendering). Each root (the pages' folder, each
mounted bundle or suite) is opened once, when the server starts, and every request is walked
from that descriptor one segment at a time with `openat(O_NOFOLLOW)`: a symlink anywhere, a
`..`, an encoded slash or NUL, or anything but a regular file at the end is a 404. Nothing is
looked up by path after it was checked, so a folder swapped for a link while the server runs
leads nowhere (by construction, not by a check on the final path). A bundle file is served only
while its bytes are those it had when the site was built, right after verification. Bundle files
go out as plain text with `nosniff` and a sandboxing CSP, so a provider's file can never run as
a page. The Host header must name this server, which shuts out DNS rebinding.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cto_harness.fsutil import sha256_bytes

HOST = "127.0.0.1"
_PAGE_TYPES = {".html": "text/html; charset=utf-8"}
_FILE_CSP = "default-src 'none'; sandbox"
_PAGE_CSP_HEADER = "frame-ancestors 'none'"
_MAX_FILE = 256 << 20


def _plain_segment(segment: str) -> bool:
    return segment not in ("", ".", "..") and not any(c in segment for c in "/\0\\")


def open_within(root_fd: int, segments: list[str]) -> int | None:
    """A read descriptor of the regular file `<root_fd>/<segments>`, reached through real
    directories only, each opened from the one before (never a link, never by path); None
    otherwise. The caller closes it."""
    if not segments or not all(_plain_segment(s) for s in segments):
        return None
    folder = root_fd
    try:
        for segment in segments[:-1]:
            child = os.open(segment, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=folder)
            previous, folder = folder, child  # forgotten before closed: never closed twice
            if previous != root_fd:
                os.close(previous)
        fd = os.open(segments[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=folder)
    except OSError:
        return None
    finally:
        if folder != root_fd:
            os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _open_root(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "cto-harness-view"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet: the URL is the output
        return

    def _route(self) -> tuple[Path | None, int | None, bool]:
        """The file for this request (its allow-listed path and an open descriptor) and whether
        it is a generated page."""
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            return None, None, False
        # Split before decoding, so an encoded "/" (%2F) stays inside one segment and is refused.
        segments = [unquote(s, errors="strict") for s in raw[1:].split("/")]
        if segments == [""]:
            segments = [self.server.index.name]
        if segments[0] == "files":
            if len(segments) < 3 or segments[1] not in self.server.mounts:
                return None, None, False
            path = self.server.mounts[segments[1]].joinpath(*segments[2:])
            if path not in self.server.files or not all(map(_plain_segment, segments[2:])):
                return None, None, False
            return path, open_within(self.server.mount_fds[segments[1]], segments[2:]), False
        path = self.server.root.joinpath(*segments)
        if path not in self.server.pages or not all(map(_plain_segment, segments)):
            return None, None, True
        return path, open_within(self.server.root_fd, segments), True

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        return host in (f"{HOST}:{port}", f"localhost:{port}")

    def _send(self, head_only: bool) -> None:
        if not self._host_ok():
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unknown host")
            return
        try:
            path, fd, is_page = self._route()
        except UnicodeDecodeError:
            path, fd, is_page = None, None, False
        if path is None or fd is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > _MAX_FILE:
                self.send_error(HTTPStatus.NOT_FOUND, "not found")
                return
            body = handle.read(size + 1)
        expected = None if is_page else self.server.files[path]
        if len(body) != size or (expected is not None and sha256_bytes(body) != expected):
            self.send_error(HTTPStatus.CONFLICT, "changed since the page was verified")
            return
        if head_only:
            body = b""
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
                 files: Mapping[Path, str], port: int = 0) -> None:
        """`files`: each bundle file a page links to, with the SHA-256 it had when the site was
        built; it is served only with those bytes."""
        self.index = index.absolute()
        self.root = self.index.parent
        self.pages = frozenset(p.absolute() for p in pages)
        self.mounts = {name: root.absolute() for name, root in mounts.items()}
        self.files = {f.absolute(): digest for f, digest in files.items()}
        # Opened now: what these paths name later (a folder swapped for a link) is never asked.
        self.root_fd = _open_root(self.root)
        self.mount_fds = {name: _open_root(root) for name, root in self.mounts.items()}
        super().__init__((HOST, port), _Handler)

    def server_close(self) -> None:
        super().server_close()
        for fd in [self.root_fd, *self.mount_fds.values()]:
            if fd >= 0:
                os.close(fd)
        self.root_fd, self.mount_fds = -1, {}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/{self.index.name}"


@contextmanager
def serving(index: Path, pages: Iterable[Path], mounts: dict[str, Path],
            files: Mapping[Path, str], port: int = 0) -> Iterator[ViewServer]:
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
