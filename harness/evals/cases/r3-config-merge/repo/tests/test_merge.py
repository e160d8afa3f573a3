import unittest

from confmerge.merge import deep_merge


class DeepMergeTest(unittest.TestCase):
    def test_override_wins(self):
        self.assertEqual(deep_merge({"a": 1, "b": 2}, {"b": 3}), {"a": 1, "b": 3})

    def test_nested_dicts_merge(self):
        self.assertEqual(
            deep_merge({"db": {"host": "h", "port": 1}}, {"db": {"port": 2}}),
            {"db": {"host": "h", "port": 2}},
        )

    def test_lists_are_replaced(self):
        self.assertEqual(deep_merge({"x": [1, 2]}, {"x": [3]}), {"x": [3]})

    def test_inputs_are_not_modified(self):
        base, override = {"db": {"port": 1}}, {"db": {"port": 2}}
        deep_merge(base, override)
        self.assertEqual(base, {"db": {"port": 1}})
        self.assertEqual(override, {"db": {"port": 2}})
