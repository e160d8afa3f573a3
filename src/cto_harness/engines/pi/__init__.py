"""The pi engine: `@mariozechner/pi-coding-agent`, admitted from npm, run in print/json mode."""
