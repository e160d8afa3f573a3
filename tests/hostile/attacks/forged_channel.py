"""Hostile provider (has read the harness): the solution, when imported, writes a complete
passing run into every pipe the process holds (the harness's result channel among them), then
ends the process."""
with open("slugkit/text.py", "w") as handle:
    handle.write('''import json, os

IDS = ["tests.test_text.SlugifyTest." + n for n in (
    "test_words_are_joined_with_hyphens", "test_surrounding_separators_are_dropped",
    "test_digits_are_kept", "test_nothing_sluggable_gives_empty",
    "test_non_ascii_letters_are_separators")]


def slugify(value):
    return ""


rows = [{"type": "start"}] + [{"type": "test", "id": i, "outcome": "passed"} for i in IDS]
rows.append({"type": "end", "ran": 5, "successful": True, "tampered": []})
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            os.write(int(fd), "".join(json.dumps({"token": "0" * 32, **r}) + "\\n"
                                      for r in rows).encode())
    except OSError:
        pass
os._exit(0)
''')
