"""How a run gets its pi: hard links into the run's private folder from a launch copy of the
store entry, never from the store itself (linking changes an inode's link count and ctime, which
the outside-write guard watches under the harness home while other runs' providers run); a
write through a link is caught by the re-hash and the copy is made again from the store."""

from __future__ import annotations

import shutil
from pathlib import Path

from cto_harness.engines.pi.install import changed_parts, choose_admission, hashed, place
from cto_harness.providers.policy import load_policy
from cto_harness.sandbox.guard import fingerprint
from pi_helpers import PI_POLICY, AdmittedPi
from standin_helpers import settings_for

PACKAGE_JSON = Path("node_modules/@mariozechner/pi-coding-agent/package.json")


def test_runs_link_a_launch_copy_and_never_touch_the_store(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    settings, policy = settings_for(admitted_pi.home), load_policy(PI_POLICY)
    record = choose_admission(settings, policy, None)
    store = Path(record.store_path).parent
    before = fingerprint(store)
    first = place(record, policy, settings, tmp_path / "run-1")
    second = place(record, policy, settings, tmp_path / "run-2")
    assert not changed_parts(first, record) and not changed_parts(second, record)
    # Both runs' files are one inode (the launch copy's), which is not the store's.
    one, two = first.tree / PACKAGE_JSON, second.tree / PACKAGE_JSON
    assert one.stat().st_ino == two.stat().st_ino != (store / "tree" / PACKAGE_JSON).stat().st_ino
    assert one.stat().st_nlink >= 3
    assert one.is_relative_to(tmp_path) and not (store / "tree").samefile(first.tree)
    shutil.rmtree(tmp_path / "run-2")
    assert fingerprint(store) == before  # link counts, ctimes: nothing under the store moved


def test_a_write_through_a_link_is_caught_and_the_copy_made_again(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    settings, policy = settings_for(admitted_pi.home), load_policy(PI_POLICY)
    record = choose_admission(settings, policy, None)
    run = place(record, policy, settings, tmp_path / "run")
    target = run.tree / PACKAGE_JSON
    target.chmod(0o644)
    with target.open("ab") as handle:  # through the link: the shared launch copy changes
        handle.write(b"\n")
    assert changed_parts(hashed(run.root, run.entry), record) == ["installed tree"]
    # The next run: its copy no longer hashes right, the store does: made again from the store.
    again = place(record, policy, settings, tmp_path / "next")
    assert not changed_parts(again, record)
    # And says so (the run that wrote may have stopped before its own re-hash named it).
    assert run.remade == () and again.remade == ("installed tree",)
    assert (again.tree / PACKAGE_JSON).stat().st_ino != target.stat().st_ino
    assert changed_parts(hashed(run.root, run.entry), record)  # the first run's copy stays bad
