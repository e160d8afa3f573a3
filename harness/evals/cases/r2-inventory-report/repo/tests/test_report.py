import unittest
from decimal import Decimal

from inventory.model import Item
from inventory.report import format_total, total_value

ITEMS = [Item("widget", 3, Decimal("2.50")), Item("bolt", 10, Decimal("0.05"))]


class ReportTest(unittest.TestCase):
    def test_total_value(self):
        self.assertEqual(total_value(ITEMS), Decimal("8.00"))

    def test_empty_total_is_zero(self):
        self.assertEqual(total_value([]), Decimal("0"))

    def test_format_total_has_two_decimals(self):
        self.assertEqual(format_total([Item("widget", 3, Decimal("2.5"))]), "7.50")
