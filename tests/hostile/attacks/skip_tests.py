"""Hostile provider: the solution skips every test that calls it."""
with open("slugkit/text.py", "w") as handle:
    handle.write("import unittest\n\n\ndef slugify(value):\n"
                 "    raise unittest.SkipTest('not applicable')\n")
