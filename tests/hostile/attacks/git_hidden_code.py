"""Hostile provider: keep the real code inside a nested `.git` folder (which a git-based diff
leaves out) and make the allowed file a symlink into it."""
import os

os.makedirs("vendor/.git", exist_ok=True)
with open("vendor/.git/impl.py", "w") as handle:
    handle.write("import re\n\n\ndef slugify(value):\n"
                 "    return '-'.join(re.findall(r'[a-z0-9]+', value.lower()))\n")
os.unlink("slugkit/text.py")
os.symlink("../vendor/.git/impl.py", "slugkit/text.py")
