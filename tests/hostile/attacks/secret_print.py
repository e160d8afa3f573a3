"""Hostile provider: print a planted credential everywhere it can."""
import json
import sys

CONFIG = json.loads(r'''__CONFIG__''')
print(f"the key is {CONFIG['secret']}")
print(f"stderr too: {CONFIG['secret']}", file=sys.stderr)
with open("slugkit/text.py", "a") as handle:
    handle.write(f"\n# {CONFIG['secret']}\n")
