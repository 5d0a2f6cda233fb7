"""The ``settings`` part of the Helm chart's values.schema.json, generated from ``vstream.config.Settings``.

``config`` and ``secrets.values`` in values.yaml take the settings' own names, so the schema that makes
``helm lint`` refuse a misspelt or mistyped setting is derived from the one source of truth. After a
setting is added or changed: ``python -m tests.deploy.values_schema`` rewrites it (test_helm checks it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vstream.config import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "deploy/helm/vstream/values.schema.json"
# JSON-schema noise pydantic adds that means nothing in a values file (or that Helm's validator would
# treat as an assertion, like formats)
_DROP = {"title", "default", "format", "writeOnly"}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _nullable(field: dict[str, Any]) -> dict[str, Any]:
    """null (or an absent key) keeps the application's default: every setting may be null."""
    alts = field.get("anyOf", [])
    if {"type": "null"} in alts or field.get("type") == "null":
        return field
    described = {k: v for k, v in field.items() if k == "description"}
    rest = {k: v for k, v in field.items() if k != "description"}
    return {**described, "anyOf": [rest, {"type": "null"}]}


def settings_schema() -> dict[str, Any]:
    """One object: each group an object of its fields, each top-level setting itself; nothing else."""
    full = Settings.model_json_schema()
    defs = full["$defs"]
    props: dict[str, Any] = {}
    for name, prop in full["properties"].items():
        ref = prop.get("$ref", "")
        if ref:
            group = _clean(defs[ref.rsplit("/", 1)[1]])
            group["properties"] = {k: _nullable(v) for k, v in group["properties"].items()}
            group.pop("required", None)
            props[name] = {"anyOf": [group, {"type": "null"}]}
        else:
            props[name] = _nullable(_clean(prop))
    return {"type": "object", "additionalProperties": False, "properties": props}


def render(current: dict[str, Any]) -> str:
    return json.dumps({**current, "$defs": {**current.get("$defs", {}), "settings": settings_schema()}},
                      indent=2) + "\n"


def main() -> int:
    current = json.loads(SCHEMA_PATH.read_text())
    SCHEMA_PATH.write_text(render(current))
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
