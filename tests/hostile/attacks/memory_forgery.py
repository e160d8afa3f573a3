"""Hostile provider (has read the harness, same process): the solution, when imported, finds the
harness driver's own reporting function in memory, reports every pristine test as passed and
the runner's end, then ends the process. Inherent to running tests in the tested code's process."""
with open("slugkit/text.py", "w") as handle:
    handle.write('''import gc, os

IDS = ["tests.test_text.SlugifyTest." + n for n in (
    "test_words_are_joined_with_hyphens", "test_surrounding_separators_are_dropped",
    "test_digits_are_kept", "test_nothing_sluggable_gives_empty",
    "test_non_ascii_letters_are_separators")]


def slugify(value):
    return ""


for obj in gc.get_objects():
    if callable(obj) and getattr(obj, "__name__", "") == "emit" and getattr(obj, "__closure__", None):
        for ident in IDS:
            obj("test", id=ident, outcome="passed")
        obj("end", ran=5, failures=0, errors=0, unexpected_successes=0, skipped=0,
            successful=True, tampered=[])
        os._exit(0)
''')
