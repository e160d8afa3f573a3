"""Hostile provider: no solution, and every test turned into an expected failure. unittest reads
the mark from the test's class, so one attribute set on TestCase when the solution is imported
does it; an expected failure counts as passing."""
with open("slugkit/text.py", "w") as handle:
    handle.write("import unittest\n\nunittest.TestCase.__unittest_expecting_failure__ = True\n\n\n"
                 "def slugify(value):\n    raise NotImplementedError\n")
