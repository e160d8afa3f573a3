"""patch.diff in numbers, as `git diff --stat` counts them: files, added and removed lines
(binary changes counted apart). One reading for report.json, report.md and the viewer."""

from __future__ import annotations

from cto_harness.contracts import DiffStats


def diff_stats(patch: bytes | str) -> DiffStats:
    """Count a unified git diff. Only lines inside a hunk count, so a removed line that reads
    `-- x` is a deletion, never mistaken for the `--- a/x` header. Lines end at `\n` alone, as
    git writes them: a U+2028 or a form feed inside an added line (`str.splitlines` breaks
    there) must not end the hunk and leave the lines after it uncounted."""
    text = patch.decode("utf-8", "replace") if isinstance(patch, bytes) else patch
    files = added = removed = binary = 0
    in_hunk = False
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            files += 1
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif not in_hunk:
            if line.startswith(("Binary files ", "GIT binary patch")):
                binary += 1
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
        elif not line.startswith((" ", "\\")) and line:
            in_hunk = False  # anything else ends the hunk
    return DiffStats(files=files, additions=added, deletions=removed, binary_files=binary)
