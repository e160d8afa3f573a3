"""A real multi-node Ray cluster on one machine, to try, test and measure the Ray executor.

A head node and N worker nodes, each a separate set of Ray processes (GCS, raylet, object
store, workers) with its own temporary directory and its own `CTO_HARNESS_HOME` (so its own
signing key, provider store and admission registry), all bound to 127.0.0.1, with small
resources (1 CPU per worker, a small object store, no dashboard, no usage reporting). Nodes are
stopped through Ray's handles on their own processes (by pid), never with `ray stop`, which
would stop every Ray process of the machine.

Run it inside a network namespace whose only interface is `lo` (`loopback_namespace_argv()`
re-executes a program there, `bring_up_loopback()` then enables `lo`), so nothing the cluster
opens is reachable from outside the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
LOOPBACK = "127.0.0.1"
# Fast detection of a lost node (default is about 15 s): a heartbeat every 0.5 s, 3 missed.
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_failure_threshold": 3}


def loopback_namespace_argv() -> list[str]:
    """The argv prefix that runs a program in a new network namespace (`unshare`, util-linux):
    as root directly, otherwise inside a user namespace mapped to root."""
    if os.geteuid() == 0:
        return ["unshare", "--net", "--"]
    return ["unshare", "--net", "--map-root-user", "--"]


def bring_up_loopback() -> None:
    """Set `lo` up in this (new) network namespace; 127.0.0.1 is then usable and nothing else."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def interfaces_up() -> list[str]:
    """Names of the interfaces that are up in this network namespace."""
    names = []
    for _index, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sh", name.encode()[:15], 0)
            flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        if flags & IFF_UP:
            names.append(name)
    return names


@dataclass
class ClusterNode:
    name: str
    home: Path
    node: Any  # ray._private.node.Node

    @property
    def node_id(self) -> str:
        return str(self.node.node_id)

    def pids(self) -> list[int]:
        """The node's own processes (GCS, raylet, object store, ...), as Ray started them."""
        return [info.process.pid for infos in self.node.all_processes.values() for info in infos]

    def process_tree(self) -> list[int]:
        """Those and every descendant (Ray workers, the raylet's agents, a run's sandbox)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat_line = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
        found, stack = [], list(self.pids())
        while stack:
            pid = stack.pop()
            if pid not in found:
                found.append(pid)
                stack.extend(children.get(pid, []))
        return found


class LocalCluster:
    """`with LocalCluster(base, workers=2, env={...}) as cluster:` then `cluster.address`."""

    def __init__(self, base: Path, *, workers: int = 2, env: Mapping[str, str] | None = None,
                 object_store_mb: int = 100, worker_cpus: int = 1) -> None:
        self.base = base
        self.env = dict(env or {})
        self.object_store_bytes = object_store_mb * 1024 * 1024
        self.worker_cpus = worker_cpus
        self.initial_workers = workers
        self.cluster: Any = None
        self.head: ClusterNode | None = None
        self.workers: list[ClusterNode] = []
        self._count = 0

    @property
    def address(self) -> str:
        assert self.cluster is not None
        return str(self.cluster.address)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> None:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray's per-machine files (the current-cluster address) go under our base, not /tmp/ray.
        os.environ["RAY_TMPDIR"] = str(self.base)
        (self.base / "ray").mkdir(parents=True, exist_ok=True)
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(shutdown_at_exit=True)
        self.head = self._add("head", num_cpus=0, _system_config=FAST_FAILURE_DETECTION)
        for _ in range(self.initial_workers):
            self.add_worker()
        self.cluster.wait_for_nodes()

    def add_worker(self) -> ClusterNode:
        self._count += 1
        node = self._add(f"w{self._count}", num_cpus=self.worker_cpus)
        self.workers.append(node)
        return node

    def _add(self, name: str, **args: Any) -> ClusterNode:
        """Start one node whose processes inherit its own CTO_HARNESS_HOME (and the cluster's
        env); the variables are set only while the node's processes are spawned."""
        home = self.base / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "CTO_HARNESS_HOME": str(home),
               "CTO_HARNESS_RUNS_DIR": str(home / "harness-runs")}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            node = self.cluster.add_node(
                node_ip_address=LOOPBACK, include_dashboard=False,
                object_store_memory=self.object_store_bytes,
                temp_dir=str(self.base / name / "t"), **args)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return ClusterNode(name, home, node)

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL every process of that node, as a lost machine would go: Ray's own handles,
        then, through pidfds taken before (no pid can be reused in between), every descendant
        (workers, agents, a run's sandbox) still alive."""
        self._remove(node)
        self.workers.remove(node)

    def _remove(self, node: ClusterNode) -> None:
        handles = []
        for pid in node.process_tree():
            try:
                handles.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue
        try:
            self.cluster.remove_node(node.node, allow_graceful=False)
            for fd in handles:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            for fd in handles:
                os.close(fd)

    def shutdown(self) -> None:
        if self.cluster is None:
            return
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for node in list(self.workers):
            self._remove(node)
        self.workers.clear()
        if self.head is not None:
            self._remove(self.head)
            self.head = None
        self.cluster = None
