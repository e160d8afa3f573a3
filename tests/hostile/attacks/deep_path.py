"""Hostile provider: a folder chain deeper than PATH_MAX (4096 bytes) holding a file."""
import os

from _past_path_max import past_path_max  # pasted in by hostile_suite: one file runs

os.mkdir("deep")
os.chdir("deep")
past_path_max()
with open("leaf.py", "w") as handle:
    handle.write("hidden = True\n")
