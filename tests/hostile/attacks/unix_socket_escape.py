"""Hostile provider: reach host services over Unix sockets: one under /run, one under /tmp, one
abstract (no path at all)."""
import json
import socket

CONFINE = json.loads(r'''__CONFINE__''')
for address in (CONFINE["run_socket"], CONFINE["tmp_socket"], "\0" + CONFINE["abstract"]):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(3)
            conn.connect(address)
            conn.sendall(b"exfiltrated")
        print(f"reached {address!r}")
    except OSError as exc:
        print(f"could not reach {address!r}: {exc}")
