"""Hostile provider: replace one verification file by a symlink to a target repository's file,
so that laying the pristine file back would overwrite the target."""
import json
import os

CONFIG = json.loads(r'''__CONFIG__''')
os.unlink("tests/test_text.py")
os.symlink(CONFIG["target_file"], "tests/test_text.py")
