"""Hostile provider: replace the fixture's `tests` folder by a symlink to a target repository,
so that a harness laying the pristine tests back (outside any sandbox) would delete and plant
files there."""
import json
import os
import shutil

CONFIG = json.loads(r'''__CONFIG__''')
shutil.rmtree("tests")
os.symlink(os.path.dirname(CONFIG["target_file"]), "tests")
