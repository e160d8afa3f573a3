"""cto-harness: run third-party coding agents on copied fixture tasks, keep checkable evidence."""

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"
REPORT_SCHEMA_VERSION = "1.0"


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Ctrl-C before the program's own handling is in place (`cli/entry.py` replaces this
    first thing): nothing is written yet, so one line and exit 3, not an import traceback."""
    _os.write(2, b"cto-harness: interrupted\n")
    _os._exit(3)


def _is_the_program() -> bool:
    """`cto-harness ...` or `python -m cto_harness[.module] ...`; never a library user's import."""
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "cto-harness":
        return True
    command = list(getattr(_sys, "orig_argv", []))
    for index, arg in enumerate(command[:-1]):
        if arg == "-m":
            return command[index + 1].split(".")[0] == "cto_harness"
    return False


if _is_the_program():
    _signal.signal(_signal.SIGINT, _interrupted_while_loading)
