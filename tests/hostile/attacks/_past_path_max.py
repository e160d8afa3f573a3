import os


def past_path_max(levels=2100):
    """From the current folder, a chain of `d` folders deeper than PATH_MAX (4096 bytes); ends
    with the deepest as the current folder."""
    for _ in range(levels):
        os.mkdir("d")
        os.chdir("d")
