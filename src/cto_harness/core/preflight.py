"""What a run checks before it writes anything, and which folders the harness itself writes.

* `check_run_folders`: the runs folder must be a folder the harness can create files in, with
  some room left. A path that is a file, a read-only mount or a folder without write permission
  is a usage error (exit 64, one line); a full disk is a harness fault (exit 3, one line). Either
  way nothing is written and no traceback is printed.
* `load_signing_key`: the signing key is loaded (or created) before the run, so that a corrupt
  or empty key file, or a home where none can be created, stops the run with one line instead of
  leaving an unsigned bundle behind; creating it first also keeps a first run of a parallel suite
  from writing `keys/` into the home while another run's provider is watched. The run signs with
  this key, loaded once: a key file that breaks while the run goes cannot leave it unsigned.
* `self_written_dirs`: the folders the harness itself writes while a provider runs (every runs
  folder: the configured one, `$CTO_HARNESS_HOME/suites`, the suite folder holding this run). The
  outside-write guard leaves them out, or the harness's own parallel runs would block each other.
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cto_harness.errors import HarnessFault, UsageError
from cto_harness.settings import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Less free space than this in the runs folder stops a run before it starts (a bundle is small,
# but the workspace copy and the verification copy are the fixture's size each).
MIN_FREE_BYTES = 4 * 1024 * 1024
SUITES_DIR = "suites"
# The file that marks a suite folder (core/suite.py writes it before any run starts).
SUITE_MARKER = "suite.json"


def check_run_folders(settings: Settings) -> None:
    """Raise UsageError / HarnessFault (one line each) unless the runs folder is usable."""
    check_writable_folder(settings.runs_dir, "runs folder (CTO_HARNESS_RUNS_DIR)")


def check_writable_folder(path: Path, what: str) -> None:
    """Create `path` if needed and prove a file can be created in it, with room to spare."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"the {what} {path} exists and is not a folder") from None
    except OSError as exc:
        raise _folder_error(path, what, exc) from None
    if not path.is_dir():
        raise UsageError(f"the {what} {path} is not a folder")
    try:
        _probe_file(path)
        free = os.statvfs(path)
    except OSError as exc:
        raise _folder_error(path, what, exc) from None
    if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
        raise HarnessFault(f"no space left in the {what} {path} "
                           f"(less than {MIN_FREE_BYTES // (1024 * 1024)} MiB free)")


def _probe_file(folder: Path) -> None:
    """Create a file in `folder` and let it go, leaving nothing behind whatever happens: an
    unnamed O_TMPFILE never appears in the folder; where the file system lacks it, a named
    probe is made and removed with Ctrl-C and SIGTERM held, so no signal can strand it."""
    try:
        os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    unheld = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        fd, probe = tempfile.mkstemp(prefix=".cto-harness-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unheld)


def _folder_error(path: Path, what: str, exc: OSError) -> UsageError | HarnessFault:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HarnessFault(f"no space left in the {what} {path}: {reason}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST):
        return UsageError(f"the {what} {path} is not writable: {reason}")
    return HarnessFault(f"cannot use the {what} {path}: {reason}")


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """Load (or create) the signing key; an unusable one is one line, before anything is written."""
    from cto_harness.evidence.signing import PRIVATE_KEY, load_or_create_key

    path = settings.keys_dir / PRIVATE_KEY
    try:
        return load_or_create_key(settings.keys_dir)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HarnessFault(f"cannot create the signing key {path}: "
                               f"{exc.strerror or exc}") from None
        raise UsageError(f"cannot create or read the signing key {path}: "
                         f"{exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the signing key {path} is unusable ({_first_line(exc)}): move it "
                         f"aside and a new key is created on the next run (bundles signed with "
                         f"the old key then need --public-key to verify)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def self_written_dirs(settings: Settings, run_dir: Path) -> frozenset[Path]:
    """The folders the harness writes while this run's provider runs, for the guard to skip."""
    found = {settings.runs_dir.absolute(), (settings.home / SUITES_DIR).absolute(),
             settings.launch_copies_dir.absolute()}
    for parent in run_dir.absolute().parents:
        if (parent / SUITE_MARKER).is_file():
            found.add(parent)  # the suite this run belongs to: its coordinator and other runs
            break
    return frozenset(found)
