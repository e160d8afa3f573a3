#!/usr/bin/env python3
"""Regenerate the run bundles that back the done work items of docs/route/stage2-run-route.md.

    python3 tools/make_route_evidence.py

Each item's scenario runs the real pipeline with an admitted stand-in provider in a temporary
home (the adapter validator's scenarios); its bundle is copied to docs/route/evidence/<item>/,
the signing public key beside it, and the record's `evidence`, `report_sha256` and `public_key`
lines are rewritten. `tools/validate_cto_child.py` then checks every claim against the bundles.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("cto_harness") is None:  # a bare python3: the project's own, instead
    _PYTHON = str(REPO / "harness" / "bin" / "python")
    os.execv(_PYTHON, [_PYTHON, *sys.argv])

from cto_harness.evidence.verify import verify_bundle  # noqa: E402
from cto_harness.fsutil import sha256_file  # noqa: E402
from cto_harness.validators.adapter import Scenario  # noqa: E402

RECORD = REPO / "docs" / "route" / "stage2-run-route.md"
EVIDENCE = REPO / "docs" / "route" / "evidence"
PUBLIC_KEY = "evidence-ed25519.pub"


def _scenarios(sc: Scenario) -> dict[str, dict[str, str | None]]:
    return {
        "CTO-WORK-017": {"CTO_HARNESS_CASE_BIN": str(sc.admitted("hang")),
                         "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "2"},
        "CTO-WORK-018": {"CTO_HARNESS_CASE_MODEL": "a-model-nobody-admitted"},
    }


def _set_item_fields(text: str, item: str, fields: dict[str, str]) -> str:
    heading = re.search(rf"^### {item}:.*$", text, re.MULTILINE)
    if heading is None:
        raise SystemExit(f"{RECORD}: no work item {item}")
    end = text.find("\n### ", heading.end())
    end = len(text) if end == -1 else end
    block = text[heading.end():end]
    for key, value in fields.items():
        line = f"- {key}: {value}"
        pattern = re.compile(rf"^- {key}:.*$", re.MULTILINE)
        block = pattern.sub(line, block) if pattern.search(block) else block.rstrip("\n") + \
            f"\n{line}\n"
    return text[:heading.end()] + block.rstrip("\n") + "\n" + ("\n" if end < len(text) else "") \
        + text[end:].lstrip("\n")


def main() -> int:
    text = RECORD.read_text()
    work = Path(tempfile.mkdtemp(prefix="cto-route-evidence-"))
    try:
        sc = Scenario(REPO / "harness", work)
        EVIDENCE.mkdir(parents=True, exist_ok=True)
        for item, env in _scenarios(sc).items():
            result = sc.run(**env)
            target = EVIDENCE / item.lower()
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(result.run_dir, target,
                            ignore=lambda d, names: [n for n in names
                                                     if n in ("workspace", "private")])
            shutil.copy2(sc.home / "keys" / PUBLIC_KEY, EVIDENCE / PUBLIC_KEY)
            verify_bundle(target, public_key=EVIDENCE / PUBLIC_KEY)
            text = _set_item_fields(text, item, {
                "status": "done",
                "evidence": f"evidence/{item.lower()}",
                "report_sha256": sha256_file(target / "report.json"),
                "public_key": f"evidence/{PUBLIC_KEY}",
            })
            print(f"{item}: {result.report.verdict} "
                  f"{[b.code for b in result.report.blockers]} -> {target.relative_to(REPO)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RECORD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
