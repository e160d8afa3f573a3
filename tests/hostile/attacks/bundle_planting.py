"""Hostile provider: plant in the bundle folder what sealing would follow, block on or choke over:
a FIFO, a symlink to the signing key, and a folder chain past PATH_MAX."""
import json
import os

from _past_path_max import past_path_max  # pasted in by hostile_suite: one file runs

CONFIG = json.loads(r'''__CONFIG__''')
run_dir = os.path.dirname(os.getcwd())
try:
    os.mkfifo(os.path.join(run_dir, "backend", "planted.fifo"))
    os.symlink(CONFIG["key_file"], os.path.join(run_dir, "backend", "key.log"))
    fd = os.open(os.path.join(run_dir, "backend"), os.O_RDONLY)
    os.mkdir("deep", dir_fd=fd)
    os.chdir(fd)
    os.chdir("deep")
    past_path_max()
    with open("note.txt", "w") as handle:
        handle.write("planted\n")
    print("planted in the bundle")
except OSError as exc:
    print(f"could not plant in the bundle: {exc}")
