"""patch.diff in numbers, as `git diff --stat` counts them: files, added and removed lines
(binary changes counted apart). One reading for report.json, report.md and the viewer."""

from __future__ import annotations

import io

from cto_harness.contracts import DiffStats


def diff_stats(patch: bytes | str) -> DiffStats:
    """Count a unified git diff. Only lines inside a hunk count, so a removed line that reads
    `-- x` is a deletion, never mistaken for the `--- a/x` header. Lines end at `\n` alone, as
    git writes them: a U+2028 or a form feed inside an added line (`str.splitlines` breaks
    there) must not end the hunk and leave the lines after it uncounted.

    The patch is read one line at a time, as bytes (every marker is ASCII): a list of its lines
    as text cost ~25 bytes of memory a patch byte when lines are short, 37 GiB for the patch of
    one 1 GiB file of two-byte lines."""
    data = patch.encode("utf-8", "replace") if isinstance(patch, str) else patch
    files = added = removed = binary = 0
    in_hunk = False
    for line in io.BytesIO(data):
        if line.startswith(b"diff --git "):
            files += 1
            in_hunk = False
        elif line.startswith(b"@@"):
            in_hunk = True
        elif not in_hunk:
            if line.startswith((b"Binary files ", b"GIT binary patch")):
                binary += 1
        elif line.startswith(b"+"):
            added += 1
        elif line.startswith(b"-"):
            removed += 1
        elif not line.startswith((b" ", b"\\", b"\n")):
            in_hunk = False  # anything else ends the hunk
    return DiffStats(files=files, additions=added, deletions=removed, binary_files=binary)
