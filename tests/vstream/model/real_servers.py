"""What the real-server fixtures in this package's conftest.py hand to tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VllmServer:
    base_url: str
    model: str  # the served model name
    checkpoint: str  # the directory it serves (vLLM's /v1/models "root")
