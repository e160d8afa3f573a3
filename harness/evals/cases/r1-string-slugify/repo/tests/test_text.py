import unittest

from slugkit import slugify


class SlugifyTest(unittest.TestCase):
    def test_words_are_joined_with_hyphens(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_surrounding_separators_are_dropped(self):
        self.assertEqual(slugify("  --A  b--  "), "a-b")

    def test_digits_are_kept(self):
        self.assertEqual(slugify("Release 2.0 notes"), "release-2-0-notes")

    def test_nothing_sluggable_gives_empty(self):
        self.assertEqual(slugify("!!! ???"), "")

    def test_non_ascii_letters_are_separators(self):
        self.assertEqual(slugify("café au lait"), "caf-au-lait")


if __name__ == "__main__":
    unittest.main()
