#!/usr/bin/env python3
"""Adapter validator (DESIGN section 8):

    python3 harness/runner/validate-case-provider-adapter.py --harness-root harness --json

Runs every fail-closed scenario of the Case adapter (DESIGN section 8) with stand-in providers in
a temporary CTO_HARNESS_HOME; prints {"ok", "checks": [{"name", "passed", "detail", "duration_ms"}]}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
    # Run under the project's own environment (this script may be started with any python3).
    os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(REPO / "src"))
_BUN = REPO / ".tools" / "bun" / "node_modules" / ".bin"
if _BUN.is_dir():
    os.environ["PATH"] = f"{_BUN}{os.pathsep}{os.environ.get('PATH', '')}"

from cto_harness.cli.adapter import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
