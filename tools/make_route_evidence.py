#!/usr/bin/env python3
"""Regenerate the run bundles that back the done work items of docs/route/.

    python3 tools/make_route_evidence.py                              # CTO-WORK-017, -018
    python3 tools/make_route_evidence.py --case-source <workos/case checkout> [--source-url URL]
                                                                      # also CTO-WORK-016, -014, -011

CTO-WORK-017/018 run the real pipeline with an admitted stand-in provider in a temporary home
(the adapter validator's scenarios). With `--case-source`, the real WorkOS Case is built from the
checkout through `cto-harness provider build` (its HEAD a pin the policy records), admitted, and
run on r1-string-slugify through the users' command against the harness's scripted model
endpoint (`validators/conformance.py`, set `happy`); that one bundle backs CTO-WORK-016 (a real
Case Stage 2 pass, endpoint scripted), CTO-WORK-014 (a real Case binary admitted) and CTO-WORK-011
(built at a recorded pin). Each bundle is copied to docs/route/evidence/<item>/ (never its
workspace, so never Case's source or binary), the signing public key beside it, and the records'
`evidence`, `report_sha256` and `public_key` lines are rewritten. `tools/validate_cto_child.py`
then checks every claim against the bundles.
"""

from __future__ import annotations

import argparse
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
from cto_harness.validators.conformance import linked_checkout  # noqa: E402

ROUTE = REPO / "docs" / "route"
RECORD = ROUTE / "stage2-run-route.md"
EVIDENCE = ROUTE / "evidence"
PUBLIC_KEY = "evidence-ed25519.pub"
CASE_KEY = "case-ed25519.pub"
CASE_BUNDLE = "case-stage2-scripted"
# Items backed by the real-Case bundle, and the record each lives in.
CASE_ITEMS = {"CTO-WORK-016": "stage2-run-route.md", "CTO-WORK-014": "provider-admission-route.md",
              "CTO-WORK-011": "provider-build-route.md"}


def _scenarios(sc: Scenario) -> dict[str, dict[str, str | None]]:
    return {
        "CTO-WORK-017": {"CTO_HARNESS_CASE_BIN": str(sc.admitted("hang")),
                         "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "2"},
        "CTO-WORK-018": {"CTO_HARNESS_CASE_MODEL": "a-model-nobody-admitted"},
    }


def _set_item_fields(text: str, item: str, fields: dict[str, str],
                     drop: tuple[str, ...] = ()) -> str:
    heading = re.search(rf"^### {item}:.*$", text, re.MULTILINE)
    if heading is None:
        raise SystemExit(f"no work item {item}")
    end = text.find("\n### ", heading.end())
    end = len(text) if end == -1 else end
    block = text[heading.end():end]
    for key in drop:
        block = re.sub(rf"^- {key}:.*\n?", "", block, flags=re.MULTILINE)
    for key, value in fields.items():
        line = f"- {key}: {value}"
        pattern = re.compile(rf"^- {key}:.*$", re.MULTILINE)
        block = pattern.sub(line, block) if pattern.search(block) else block.rstrip("\n") + \
            f"\n{line}\n"
    return text[:heading.end()] + block.rstrip("\n") + "\n" + ("\n" if end < len(text) else "") \
        + text[end:].lstrip("\n")


def _copy_bundle(run_dir: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run_dir, target, ignore=lambda d, names: [
        n for n in names if n in ("workspace", "private")])


def case_evidence(source: Path, source_url: str | None) -> None:
    """Build and run the real Case (scripted endpoint) and back CTO-WORK-016/014/011 with it."""
    from cto_harness.validators.conformance import build_case, expectations, run_scenario

    work = Path(tempfile.mkdtemp(prefix="cto-route-evidence-"))
    try:
        home = work / "home"
        # Run from a copy of the harness (as the other items do), with a neutral HOME: the
        # bundle names the paths it hid and wrote, and no path of this machine belongs in it.
        repo = linked_checkout(REPO, work / "repo")
        (work / "user-home").mkdir()
        built = build_case(repo, source, home, source_url=source_url)
        result = run_scenario(repo, home, Path(built["artifact"]["store_path"]), "happy", "happy",
                              HOME=str(work / "user-home"))
        failed = [c for c in expectations(result) if not c.passed]
        if failed:
            raise SystemExit(f"the real Case run is not a clean pass: {failed}")
        target = EVIDENCE / CASE_BUNDLE
        _copy_bundle(result.run_dir, target)
        shutil.copy2(home / "keys" / PUBLIC_KEY, EVIDENCE / CASE_KEY)
        verify_bundle(target, public_key=EVIDENCE / CASE_KEY)
        report = result.report
        digest = sha256_file(target / "report.json")
        common = {"status": "done", "evidence": f"evidence/{CASE_BUNDLE}",
                  "report_sha256": digest, "public_key": f"evidence/{CASE_KEY}"}
        claims = {
            "CTO-WORK-016": {"engine": "case", "expect_verdict": "pass",
                             "expect_endpoint_kind": "scripted",
                             "expect_provider_outcome": "completed"},
            "CTO-WORK-014": {"engine": "case", "expect_verdict": "pass",
                             "expect_endpoint_kind": "scripted", "expect_admission": "admitted",
                             "expect_provenance": "built", "expect_pin": report["provider"]["pin"]},
            "CTO-WORK-011": {"engine": "case", "expect_verdict": "pass",
                             "expect_endpoint_kind": "scripted", "expect_provenance": "built",
                             "expect_pin": report["provider"]["pin"]},
        }
        for item, record in CASE_ITEMS.items():
            path = ROUTE / record
            path.write_text(_set_item_fields(path.read_text(), item, common | claims[item],
                                             drop=("blocked_by",)))
        timing = report["timing"]
        print(f"CTO-WORK-016/014/011: {report['verdict']} (Case {built['source']['commit'][:12]}, "
              f"endpoint {report['model']['endpoint_kind']}, Case pipeline "
              f"{report['provider_outcome']['outcome']}, wall {timing['duration_ms']} ms, "
              f"provider {timing['provider_ms']} ms) -> {target.relative_to(REPO)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case-source", help="a checkout of workos/case: also regenerate the "
                        "real-Case evidence (CTO-WORK-016, -014, -011)")
    parser.add_argument("--source-url", help="the repository the checkout is, if its origin is "
                        "a mirror")
    parser.add_argument("--only-case", action="store_true",
                        help="with --case-source: leave CTO-WORK-017/018 as they are")
    args = parser.parse_args()
    if args.case_source:
        case_evidence(Path(args.case_source).absolute(), args.source_url)
        if args.only_case:
            return 0
    text = RECORD.read_text()
    work = Path(tempfile.mkdtemp(prefix="cto-route-evidence-"))
    try:
        sc = Scenario(REPO / "harness", work)
        EVIDENCE.mkdir(parents=True, exist_ok=True)
        for item, env in _scenarios(sc).items():
            result = sc.run(**env)
            target = EVIDENCE / item.lower()
            _copy_bundle(result.run_dir, target)
            shutil.copy2(sc.home / "keys" / PUBLIC_KEY, EVIDENCE / PUBLIC_KEY)
            verify_bundle(target, public_key=EVIDENCE / PUBLIC_KEY)
            fields = {
                "status": "done",
                "evidence": f"evidence/{item.lower()}",
                "report_sha256": sha256_file(target / "report.json"),
                "public_key": f"evidence/{PUBLIC_KEY}",
            }
            if result.report.model.endpoint_kind:  # the record says which endpoint it had
                fields["expect_endpoint_kind"] = result.report.model.endpoint_kind
            text = _set_item_fields(text, item, fields)
            print(f"{item}: {result.report.verdict} "
                  f"{[b.code for b in result.report.blockers]} -> {target.relative_to(REPO)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RECORD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
