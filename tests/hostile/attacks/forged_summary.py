"""Hostile provider: the solution (an allowed file) prints a unittest summary when imported,
then ends the process before any test runs."""
with open("slugkit/text.py", "w") as handle:
    handle.write(
        "import os, sys\n\n\ndef slugify(value):\n    return ''\n\n\n"
        "sys.stderr.write('.....\\n' + '-' * 70 + '\\nRan 5 tests in 0.002s\\n\\nOK\\n')\n"
        "sys.stderr.flush()\n"
        "os._exit(0)\n")
