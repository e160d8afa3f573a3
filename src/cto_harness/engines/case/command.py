"""The one command shape the Case engine may launch (DESIGN section 6, step 4):

    <ca> run --task <task-file> --mode unattended

`CaseCommand` builds that argv and `check_case_argv` refuses anything else: an extra flag (for
instance `--model`, which Case reads as `anthropic/<X>`), a missing or reordered argument, a
relative path, or a task file that is not a `.task.json`. The engine checks the argv it is about
to hand to the process runner, so a bug elsewhere cannot widen what is launched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cto_harness.errors import HarnessFault

BINARY_NAME = "ca"
TASK_SUFFIX = ".task.json"


class CommandShapeError(HarnessFault):
    """The argv is not exactly `<ca> run --task <task-file> --mode unattended`."""


@dataclass(frozen=True)
class CaseCommand:
    binary: Path
    task_file: Path

    def argv(self) -> list[str]:
        argv = [str(self.binary), "run", "--task", str(self.task_file), "--mode", "unattended"]
        check_case_argv(argv, binary=self.binary, task_file=self.task_file)
        return argv


def check_case_argv(
    argv: Sequence[str], *, binary: Path | None = None, task_file: Path | None = None
) -> None:
    """Raise `CommandShapeError` unless `argv` is exactly the allowed shape (and, when given, names
    exactly this binary and this task file)."""
    argv = list(argv)
    if len(argv) != 6:
        raise CommandShapeError(f"the Case command has 6 arguments, got {len(argv)}: {argv!r}")
    ca, run, task_flag, task, mode_flag, mode = argv
    if (run, task_flag, mode_flag, mode) != ("run", "--task", "--mode", "unattended"):
        raise CommandShapeError(
            f"the Case command must be `<ca> run --task <file> --mode unattended`, got {argv!r}"
        )
    if not Path(ca).is_absolute() or Path(ca).name != BINARY_NAME:
        raise CommandShapeError(f"the provider must be an absolute path to `ca`, got {ca!r}")
    if not Path(task).is_absolute() or not task.endswith(TASK_SUFFIX) or task.startswith("-"):
        raise CommandShapeError(f"the task file must be an absolute *{TASK_SUFFIX}, got {task!r}")
    if any(not arg or "\0" in arg or "\n" in arg for arg in argv):
        raise CommandShapeError("empty arguments or control characters in the Case command")
    if binary is not None and ca != str(binary):
        raise CommandShapeError(f"the command runs {ca!r}, not the hashed copy {binary}")
    if task_file is not None and task != str(task_file):
        raise CommandShapeError(f"the command names {task!r}, not the generated task {task_file}")
