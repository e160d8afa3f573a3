"""Hostile provider: a setuid/setgid solution file, hoping the harness copies the bits into the
verification copy it creates (as its own user)."""
import os

os.chmod("slugkit/text.py", 0o6755)
