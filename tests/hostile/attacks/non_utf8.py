"""Hostile provider: a solution saved as latin-1 (not UTF-8) and a file whose name is not UTF-8."""

with open("slugkit/text.py", "wb") as handle:
    handle.write(b"# -*- coding: latin-1 -*-\n# caf\xe9 au lait\nimport re\n\n\n"
                 b"def slugify(value):\n"
                 b"    return '-'.join(re.findall(r'[a-z0-9]+', value.lower()))\n")
with open(b"slugkit/caf\xe9-\xff.txt", "wb") as handle:
    handle.write(b"\xff\xfe not text\n")
