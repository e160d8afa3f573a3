"""Hostile provider: solve nothing, rewrite the tests so that they pass."""
from pathlib import Path

Path("tests/test_text.py").write_text(
    "import unittest\n\n\nclass T(unittest.TestCase):\n"
    + "".join(f"    def test_{i}(self):\n        self.assertTrue(True)\n\n" for i in range(6))
)
