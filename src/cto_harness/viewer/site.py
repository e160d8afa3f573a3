"""Which kind of folder was given, and the pages built for it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from cto_harness.errors import UsageError
from cto_harness.fsutil import sha256_file
from cto_harness.viewer.compare import compare_runs, compare_suites
from cto_harness.viewer.render import (
    Links,
    Site,
    environment,
    render_run,
    render_run_comparison,
    render_suite,
    render_suite_comparison,
)
from cto_harness.viewer.runview import load_run
from cto_harness.viewer.suiteview import is_suite, load_suite


def kind_of(path: Path) -> str:
    """`suite` (a folder with suite.json) or `run` (a bundle folder); else a usage error."""
    if path.is_symlink() or not path.is_dir():
        raise UsageError(f"not a folder: {path}")
    if is_suite(path):
        return "suite"
    if (path / "report.json").exists() or (path / "artifacts.sha256").exists():
        return "run"
    raise UsageError(f"neither a run bundle (report.json) nor a suite (suite.json): {path}")


def mounts_for(paths: Sequence[Path]) -> dict[str, Path]:
    """What a server may serve besides the pages: the given folders, each under its own name."""
    if len(paths) == 1:
        return {"bundle": paths[0].absolute()}
    return {"a": paths[0].absolute(), "b": paths[1].absolute()}


def build_site(paths: Sequence[Path], out: Path, *, public_key: Path | None = None,
               serve: bool = False) -> Site:
    """Verify, read and render; `out` is the main page. With `serve`, links to bundle files go
    through the server's mounts instead of relative paths."""
    if len(paths) not in (1, 2):
        raise UsageError("view takes one folder, or two to compare")
    kinds = [kind_of(p) for p in paths]
    if len(paths) == 2 and kinds[0] != kinds[1]:
        raise UsageError("compare two runs or two suites, not a run with a suite")
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = environment()
    links = Links(mounts_for(paths) if serve else None)
    site = Site(main=out)
    baseline = partial(load_run, public_key=public_key)
    if len(paths) == 1 and kinds[0] == "run":
        render_run(env, load_run(paths[0], public_key), out, links, site, load_baseline=baseline)
    elif len(paths) == 1:
        render_suite(env, load_suite(paths[0], public_key), out, links, site,
                     load_baseline=baseline)
    elif kinds[0] == "run":
        render_run_comparison(env, compare_runs(load_run(paths[0], public_key),
                                                load_run(paths[1], public_key)),
                              out, links, site, baseline)
    else:
        render_suite_comparison(env, compare_suites(load_suite(paths[0], public_key),
                                                    load_suite(paths[1], public_key)),
                                out, links, site, baseline)
    site.files = _digests(links.linked) if serve else {}
    return site


def _digests(files: Iterable[Path]) -> dict[Path, str]:
    """Each file's SHA-256 now, just after verification: the server sends only these bytes. A
    file that cannot be read as a regular file is left out (never served)."""
    digests = {}
    for path in files:
        try:
            digests[path] = sha256_file(path)
        except OSError:
            continue
    return digests
