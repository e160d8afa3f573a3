"""The program's entry point (`cto-harness`, `python -m cto_harness`): a Ctrl-C while the
command is still loading, or a reader that closes stdout early (`cto-harness config show |
head -1`), ends in one line on stderr and exit 3, never a traceback.

Before this runs, `cto_harness/__init__.py` has made a Ctrl-C print that one line and exit; here,
inside the `try`, a Ctrl-C becomes a KeyboardInterrupt again (the run pipeline seals an
`interrupted` bundle on it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys

EXIT_ERROR = 3  # errors.ExitCode.ERROR, without importing it before the `try`


def main() -> int:
    code = EXIT_ERROR
    try:
        # From here on a Ctrl-C is a KeyboardInterrupt again (cto_harness/__init__.py exited).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # The program loads no pydantic plugins: no installed package's code joins the validation
        # of evidence, and pydantic's scan of every package's entry points (~15 ms) is skipped.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        from cto_harness.cli.main import main as run_command

        code = run_command()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except KeyboardInterrupt:
        code = EXIT_ERROR
        _say("cto-harness: interrupted")
    except BrokenPipeError:
        code = EXIT_ERROR
        _say("cto-harness: output closed early (broken pipe); output is incomplete")
    finally:
        _end_children()
    _leave(code)
    return code


def _leave(code: int) -> None:
    """End the process now, without the interpreter's teardown: freeing every object of a
    process that is ending anyway costs ~50 ms after each run. The exit functions still run
    (logging's, and whatever a library such as Ray registered) and the standard streams are
    flushed; where a non-daemon thread is still running, the normal exit (which waits for it)
    is kept."""
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        return
    with contextlib.suppress(Exception, KeyboardInterrupt):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _end_children() -> None:
    """Nothing the program started outlives it (sandbox/process.py `end_own_children`)."""
    if "subprocess" not in sys.modules:  # it started nothing
        return
    with contextlib.suppress(Exception, KeyboardInterrupt):
        from cto_harness.sandbox.process import end_own_children

        end_own_children()


def _say(line: str) -> None:
    _discard_stdout()
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush finds no broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
