"""Fixtures for the deployment files: helm, kubeconform and the schemas that deploy/local/k8s-check.sh
builds and caches (never skipped: without them the fixture fails, as CI must check the chart for real)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from vstream.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/vstream"
FULL_VALUES = CHART / "ci/full-values.yaml"

Render = Callable[..., list[dict[str, Any]]]
LoadEnv = Callable[[Mapping[str, str]], Settings]


@pytest.fixture(scope="session")
def k8s_tools() -> dict[str, Path]:
    """helm, kubeconform and compose_schema paths (built/fetched on first use, ~3 min, then cached)."""
    proc = subprocess.run(
        [str(REPO / "deploy/local/k8s-check.sh"), "tools"], capture_output=True, text=True, timeout=1500
    )
    if proc.returncode:
        pytest.fail(f"deploy/local/k8s-check.sh tools failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and "[" not in line)
    return {name: Path(path) for name, path in found.items()}


def helm(tools: Mapping[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools["helm"]), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def render(k8s_tools: dict[str, Path]) -> Render:
    """``render(*helm_args)``: the manifests ``helm template`` makes, as dicts; fails on a helm error."""

    def _render(*args: str) -> list[dict[str, Any]]:
        proc = helm(k8s_tools, "template", "vs", str(CHART), *args)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    names = [d["metadata"]["name"] for d in find(docs, kind)]
    assert len(found) == 1, f"expected one {kind} {name}, got {names}"
    return found[0]


@pytest.fixture
def load_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadEnv]:
    """Settings as the app would load them from exactly these variables (and no other VSTREAM_* one)."""

    def _load(env: Mapping[str, str]) -> Settings:
        for var in list(os.environ):
            if var.startswith("VSTREAM_"):
                monkeypatch.delenv(var)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        return load_settings()

    yield _load
