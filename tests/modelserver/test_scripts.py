"""Script sets are data: the shipped ones load, extend each other, and a malformed one is refused
with its file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from cto_harness.modelserver import ScriptError, ScriptSet

REPO_ROOT = Path(__file__).resolve().parents[2]
SETS = REPO_ROOT / "harness" / "model-scripts" / "r1-string-slugify"
ROLES = ["closer", "implementer", "retrospective", "reviewer", "verifier"]


@pytest.mark.parametrize("name", ["happy", "strict-closer", "hostile-gh-api",
                                  "hostile-edit-tests"])
def test_shipped_sets_script_every_role(name: str) -> None:
    scripts = ScriptSet.load(SETS / name)
    assert [s.role for s in scripts.scripts] == ROLES
    assert scripts.description and len(scripts.digest) == 64
    for script in scripts.scripts:
        assert script.steps[-1].final or any(s.final for s in script.steps)
        first = f"# {script.role.capitalize()} — whatever follows"
        assert scripts.role_for(first) is script


def test_a_variant_holds_only_what_it_changes() -> None:
    strict = ScriptSet.load(SETS / "strict-closer")
    assert strict.files == ("strict-closer/closer.toml", "happy/implementer.toml",
                            "happy/retrospective.toml", "happy/reviewer.toml",
                            "happy/verifier.toml")
    assert strict.digest != ScriptSet.load(SETS / "happy").digest


BASE = '''role = "worker"
system_prompt_pattern = '\\A# Worker'
[[steps]]
final = true
text = "done"
'''


@pytest.mark.parametrize("text, fragment", [
    (BASE.replace("'\\A# Worker'", "'(unclosed'"), "not a regular expression"),
    (BASE + '[[steps]]\ntool = "bash"\non_result = [{matches = "x", goto = "nowhere"}]\n',
     "unknown label"),
    (BASE.replace('final = true\ntext = "done"', 'tool = "bash"'), "needs a final step"),
    (BASE.replace('text = "done"', 'text = "done"\ncapture = { a = "(x)" }'),
     "a final step has only"),
    (BASE + '[[steps]]\ntool = "bash"\ncapture = { a = "nogroup" }\n', "needs a group"),
    (BASE + 'surprise = 1\n', "surprise"),
    ("not toml at all [", "invalid TOML"),
])
def test_malformed_scripts_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "worker.toml").write_text(text)
    with pytest.raises(ScriptError) as caught:
        ScriptSet.load(folder)
    assert fragment in str(caught.value) and "worker.toml" in str(caught.value)


def test_set_level_mistakes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "set.toml").write_text('extends = "b"\n')
    (tmp_path / "b" / "set.toml").write_text('extends = "a"\n')
    with pytest.raises(ScriptError, match="in a loop"):
        ScriptSet.load(tmp_path / "a")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "one.toml").write_text(BASE)
    (tmp_path / "c" / "two.toml").write_text(BASE)
    with pytest.raises(ScriptError, match="scripted twice"):
        ScriptSet.load(tmp_path / "c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ScriptError, match="no role scripts"):
        ScriptSet.load(tmp_path / "d")
