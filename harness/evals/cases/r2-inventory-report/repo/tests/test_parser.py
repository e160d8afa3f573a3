import unittest
from decimal import Decimal

from inventory.model import Item
from inventory.parser import parse_line


class ParseLineTest(unittest.TestCase):
    def test_fields_are_stripped_and_typed(self):
        self.assertEqual(parse_line(" widget , 3 , 2.50 "), Item("widget", 3, Decimal("2.50")))

    def test_wrong_field_count_is_rejected(self):
        with self.assertRaises(ValueError):
            parse_line("widget, 3")

    def test_negative_quantity_is_rejected(self):
        with self.assertRaises(ValueError):
            parse_line("widget, -1, 2.50")
