"""A TCP service on the host's loopback for the network-confinement tests: each connection is
handed to `handle` on a thread of its own accept loop; the socket closes when the block ends."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def loopback_service(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """Yields the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed
            with conn:
                handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
