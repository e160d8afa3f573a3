"""JSON Schemas generated from the typed contracts, so they can never drift by hand."""

from __future__ import annotations

import json
from pathlib import Path

from cto_harness.contracts import SCHEMA_MODELS
from cto_harness.fsutil import atomic_write_text


def render_schemas() -> dict[str, str]:
    rendered = {}
    for name, model in SCHEMA_MODELS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://cto-harness.invalid/schemas/{name}.schema.json"
        rendered[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(directory: Path) -> list[Path]:
    written = []
    for filename, text in render_schemas().items():
        atomic_write_text(directory / filename, text)
        written.append(directory / filename)
    return written


def check_schemas(directory: Path) -> list[str]:
    """Names of schemas whose file is missing or differs from what the models generate."""
    return [
        filename
        for filename, text in render_schemas().items()
        if not (directory / filename).is_file()
        or (directory / filename).read_text(encoding="utf-8") != text
    ]
