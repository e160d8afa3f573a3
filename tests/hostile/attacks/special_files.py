"""Hostile provider: a FIFO, a Unix socket and (where allowed) a character device in the
workspace, and the event log the harness reads replaced by a FIFO."""
import os
import socket

os.mkfifo("slugkit/pipe")
server = socket.socket(socket.AF_UNIX)
server.bind("slugkit/sock")
try:
    os.mknod("slugkit/zero", 0o666 | 0o020000, os.makedev(1, 5))  # like /dev/zero
except OSError as exc:
    print(f"mknod refused: {exc}")
events = os.environ.get("CTO_FAKE_EVENTS")
if events:
    os.unlink(events)
    os.mkfifo(events)
