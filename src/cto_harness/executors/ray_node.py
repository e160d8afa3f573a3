"""What one Ray task does on the node that runs it: the ordinary single-run pipeline, at home.

The node trusts no path from the driver. It gets bytes and their digests:

* the harness folder (the suite's fixture cases and the provider policy) as an archive, unpacked
  once per digest under `$CTO_HARNESS_RUNS_DIR/ray/harness/<digest>/`;
* for an engine with a provider (Case), the admitted binary and its admission record. The
  node writes the bytes into its own content-addressed store
  (`$CTO_HARNESS_HOME/providers/<provider>/<sha256>/<binary>`, through the same staging and
  re-hash as `provider admit`) and records the admission in its own registry. A store entry
  that is already there is re-hashed and never repaired: if its bytes changed, the run is
  pointed at it anyway and the engine's own gate (which hashes the private copy it is about to
  execute) blocks `provider_not_admitted` there. Bytes that arrive with the wrong digest are
  never stored; the run is pointed at a quarantined copy and blocks the same way.

Then `execute_run` runs in this node's own environment: its own `CTO_HARNESS_HOME` (keys, store,
registry, config), its own isolation tier (probed here, recorded in the report), its own
credentials (none travel through the object store). Only the engine's own settings (Case: allow,
stage, model, time limit) come from the driver. The bundle goes back as a tar of its evidence
files (the working copy stays out) with the node's public key; the node's scratch copy is removed.
Each task's scratch copy lives in a folder named after its process (pid and start time): a task
killed outright (its worker process gone) cannot remove its own, so the node's next task does.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from cto_harness import __version__
from cto_harness.executors.archive import ArchiveRejected, pack_tree, unpack_into_new
from cto_harness.fsutil import exclusive_lock, sha256_bytes
from cto_harness.sandbox.process import stat_fields
from cto_harness.settings import Settings
from cto_harness.tree import remove_tree

# The binary an engine with a provider runs is its settings' `bin` field (Case:
# CTO_HARNESS_CASE_BIN); on a node it is always the copy this node installed from the shipped bytes.
BINARY_FIELD = "bin"
_BINARY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def engine_variables(engine: str) -> tuple[tuple[str, ...], str | None]:
    """(the engine's own variables the driver's suite decides for every node, the variable naming
    its provider binary or None). The rest of a node's environment is its own."""
    from cto_harness.engines import engine_class

    cls = engine_class(engine)
    model = cls.settings_model
    fields = model.model_fields
    binary = (model.env_names(BINARY_FIELD)[0]
              if cls.provider is not None and BINARY_FIELD in fields else None)
    names = tuple(n for f in fields if f != BINARY_FIELD for n in model.env_names(f))
    return names, binary


INSTALL_LOCK = ".install.lock"
TASKS = "tasks"  # one folder per task: <pid>-<process start time>-<random>


def node_info() -> dict[str, Any]:
    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        # Outside a Ray worker (tests of this module) the host is enough; asking for the runtime
        # context there would start a private Ray instance.
        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
            info["ip"] = ray.util.get_node_ip_address()
    except Exception:  # Ray missing or its context unreadable: the host is enough
        pass
    return info


def run_task(spec: dict[str, Any], harness: list[Any], provider: list[Any]) -> dict[str, Any]:
    """The Ray task. `harness` and `provider` hold object refs (inside lists, so that Ray does not
    fetch them before this node knows it needs them) or, outside Ray, the bytes themselves."""
    began = time.monotonic()
    node = node_info()
    if spec.get("harness_version") != __version__:
        return {"ok": False, "node": node, "blocker": "node_error",
                "message": f"this node runs cto-harness {__version__}, the driver "
                           f"{spec.get('harness_version')}: install the same version on every node"}
    from cto_harness.core.run import execute_run
    from cto_harness.evidence.layout import bundle_files
    from cto_harness.evidence.signing import load_or_create_key, public_pem

    suite_names, binary_var = engine_variables(spec["engine"])
    environ = {k: v for k, v in os.environ.items() if k not in suite_names and k != binary_var}
    environ.update({k: str(v) for k, v in (spec.get("suite_settings") or {}).items()
                    if k in suite_names})
    settings = Settings.from_env(environ)
    scratch = settings.runs_dir / "ray"
    scratch.mkdir(parents=True, exist_ok=True)
    # One installer at a time per node, and all of it before this task's run starts watching
    # the harness home (a later write there would look like an outside write to a running run).
    with exclusive_lock(scratch / INSTALL_LOCK):
        harness_root = materialize_harness(scratch, spec["harness_digest"], harness)
        if spec.get("provider") and binary_var is not None:
            environ[binary_var] = str(install_provider(settings, scratch, spec["provider"],
                                                       provider))
        key = load_or_create_key(settings.keys_dir)
        remove_abandoned_tasks(scratch / TASKS)
    task_dir = scratch / TASKS / f"{_process_tag(os.getpid()) or os.getpid()}-{uuid.uuid4().hex[:8]}"
    run_dir = (task_dir / spec["suite_token"]
               / f"{spec['case_id']}-r{spec['repeat']:03d}-{uuid.uuid4().hex[:8]}")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_began = time.monotonic()
        result = execute_run(spec["case_id"], spec["engine"], harness_root=harness_root,
                             environ=environ, run_dir=run_dir,
                             challenge=spec.get("challenge"))
        exec_ms = (time.monotonic() - run_began) * 1000
        archive = pack_tree(run_dir, bundle_files(run_dir))
    finally:
        remove_tree(task_dir)  # by descriptors: no link the provider planted is followed
    report = result.report
    # Timings for the benchmark's overhead split (the suite reads nothing but the bundle).
    timing = {"task_ms": (time.monotonic() - began) * 1000, "exec_ms": exec_ms,
              "run_ms": report.timing.duration_ms}
    return {"ok": True, "node": node, "archive": archive, "public_key": public_pem(key.public_key()),
            "verdict": report.verdict, "isolation": report.isolation.tier, "timing": timing}


def _process_tag(pid: int) -> str | None:
    """`<pid>-<start time>` of a live process (the start time, field 22 of proc(5), tells a
    reused pid apart), else None."""
    fields = stat_fields(pid)
    return None if fields is None else f"{pid}-{fields[19]}"


def remove_abandoned_tasks(tasks: Path) -> list[str]:
    """Remove the scratch folders of tasks whose process is gone (killed before its own clean-up
    ran); returns their names. A folder whose name is not a task's is left alone."""
    removed = []
    for entry in sorted(tasks.iterdir()) if tasks.is_dir() else []:
        match = re.fullmatch(r"(\d+)-(\d+)-[0-9a-f]{8}", entry.name)
        if match and _process_tag(int(match[1])) != f"{match[1]}-{match[2]}":
            remove_tree(entry)
            removed.append(entry.name)
    return removed


def _resolve(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    import ray

    return bytes(ray.get(item))


def materialize_harness(scratch: Path, digest: str, harness: list[Any]) -> Path:
    """The harness folder of this digest, unpacked once per node; the archive is re-hashed."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("malformed harness digest")
    target = scratch / "harness" / digest
    if (target / ".complete").is_file():
        return target
    data = _resolve(harness[0])
    if sha256_bytes(data) != digest:
        raise ArchiveRejected("the harness archive does not hash to the digest the driver sent")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    unpacked = unpack_into_new(data, target.parent)
    (unpacked / ".complete").write_text(digest + "\n")
    os.rename(unpacked, target)
    return target


def install_provider(settings: Settings, scratch: Path, provider: dict[str, Any],
                     payload: list[Any]) -> Path:
    """The path the run is told to use as its provider binary (see the module's docstring)."""
    from cto_harness.providers.registry import AdmissionRecord, find_admission, record_admission
    from cto_harness.providers.store import open_store_entry, staged_copy, store_entry_dir

    record = AdmissionRecord.model_validate(provider["record"])
    binary_name = str(provider.get("binary"))
    if not _BINARY_NAME.fullmatch(binary_name):  # a file name, never a path
        raise ValueError(f"malformed provider binary name {binary_name[:80]!r}")
    digest = record.sha256
    entry = store_entry_dir(settings, digest, record.provider)
    stored = entry / binary_name
    if not stored.is_file():
        data = _resolve(payload[0])
        if sha256_bytes(data) != digest:
            quarantine = scratch / "quarantine" / uuid.uuid4().hex / binary_name
            quarantine.parent.mkdir(parents=True)
            quarantine.write_bytes(data)
            quarantine.chmod(0o555)
            return quarantine
        incoming = scratch / "incoming" / uuid.uuid4().hex
        incoming.mkdir(parents=True)
        try:
            (incoming / binary_name).write_bytes(data)
            # The store's own route: a staged copy in the store, hashed, renamed into place.
            with staged_copy(settings, incoming / binary_name, record.provider,
                             binary_name) as staged:
                if staged.sha256 == digest:
                    with open_store_entry(settings, staged, record.provider):
                        pass
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
    if find_admission(settings, digest, record.provider) is None:
        record_admission(settings, record.model_copy(update={"store_path": str(stored)}))
    # Never repaired here: a store copy whose bytes changed must block, not be quietly replaced.
    return stored
