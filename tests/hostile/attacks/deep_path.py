"""Hostile provider: a folder chain deeper than PATH_MAX (4096 bytes) holding a file."""
import os

os.mkdir("deep")
os.chdir("deep")
for _ in range(2100):
    os.mkdir("d")
    os.chdir("d")
with open("leaf.py", "w") as handle:
    handle.write("hidden = True\n")
