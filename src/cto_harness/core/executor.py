"""The executor seam of `cto-harness suite`: where a suite's runs happen.

The suite (`core/suite.py`) owns the bookkeeping: which (case, repeat) runs are due, where each
bundle goes in the suite folder, reading every result back from its bundle through
`verify_bundle`, `suite.json`, aggregates, resume. An executor only runs the due jobs somewhere
and tells the suite, through `SuiteHooks`, when one started and when its bundle lies in the suite
folder (or why none does). Two exist:

* `local` (`core/suite.py`'s `LocalExecutor`): persistent worker processes on this machine.
* `ray` (`cto_harness/executors/`, needs the `ray` extra): one Ray task per run on a Ray cluster.
  It lives above the core (it ships an engine's admitted provider), chosen by
  `executors/choose.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cto_harness.errors import BlockerCode

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass
class Job:
    """One (case, repeat) of a suite, as the suite and its executor share it."""

    case_id: str
    repeat: int
    run_dir: Path | None = None
    # Filled once the run is over (from the bundle itself, never from the worker).
    record: dict[str, Any] | None = None
    started: float | None = None


@dataclass(frozen=True)
class SuitePlan:
    """What every executor needs to know about the suite it runs."""

    engine: str
    harness_root: Path
    suite_dir: Path
    jobs: int | None  # runs at once; None: the executor's own default
    case_ids: tuple[str, ...]
    challenge: str | None = None  # the verifier's `--challenge`, bound into every run


@dataclass(frozen=True)
class Finished:
    """One job is over. `run_dir` is its bundle in the suite folder, or None when no bundle came
    back; the suite verifies it with `public_key` (None: this machine's own key) before counting.

    `blocker` names why there is no bundle when the executor knows (`node_lost`: the node or the
    task died; `node_error`: the node could not run it; `bundle_rejected`: the archive that came
    back was unsafe): such a run counts as verdict `error`. Without a blocker and without a
    verifying bundle the run stays verdict-less (`interrupted` when `stopping`, else `no_bundle`),
    as a local worker that died does. `extra` goes into the run's row of suite.json as it is.
    """

    run_dir: Path | None
    public_key: Path | None = None
    blocker: BlockerCode | None = None
    message: str | None = None
    stopping: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class SuiteHooks(Protocol):
    def place(self, job: Job) -> Path:
        """Choose (and create the parent of) the job's bundle path in the suite folder."""

    def started(self, job: Job) -> None: ...

    def finished(self, job: Job, done: Finished) -> None:
        """Verify and record the job's result; rewrites suite.json."""

    def live(self, running: Sequence[Job]) -> None: ...

    def note(self, text: str) -> None:
        """A progress line (stderr)."""


class Executor(Protocol):
    name: str

    def execute(self, todo: list[Job], plan: SuitePlan, hooks: SuiteHooks) -> bool:
        """Run every job of `todo`, reporting each through `hooks`; returns True when a signal
        (Ctrl-C, SIGTERM) stopped it early. Jobs never reported stay pending."""
