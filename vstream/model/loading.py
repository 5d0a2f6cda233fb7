"""Where a transformers model comes from: ``"tiny"``, a local directory or a Hugging Face hub id.

Kept apart from the backend so the bench and the CLI can resolve the same names (and build the tiny
checkpoint) without constructing a backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from vstream.model.base import BackendError

logger = logging.getLogger(__name__)

__all__ = [
    "TINY",
    "cache_root",
    "offline",
    "resolve_device_map",
    "resolve_dtype",
    "resolve_model_source",
    "tiny_checkpoint_dir",
]

TINY = "tiny"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def cache_root() -> Path:
    """``$VSTREAM_CACHE`` or ``~/.cache/vstream``."""
    return Path(os.environ.get("VSTREAM_CACHE") or "~/.cache/vstream").expanduser()


def _tiny_source_hash() -> str:
    from vstream.model import tiny

    # The checkpoint is a pure function of tiny.py (fixed seed), so its source names the cache entry:
    # editing the builder invalidates old builds without any manual cleanup.
    return hashlib.sha256(Path(tiny.__file__).read_bytes()).hexdigest()[:16]


def tiny_checkpoint_dir(root: Path | None = None) -> Path:
    """Build the tiny random-weight checkpoint once under ``<root>/models/tiny-<hash>`` and return it."""
    from vstream.model.tiny import make_tiny_checkpoint

    models = (root or cache_root()) / "models"
    target = models / f"tiny-{_tiny_source_hash()}"
    if (target / "config.json").is_file():
        return target
    models.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent workers never load a half-written directory.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=models))
    try:
        make_tiny_checkpoint(staging)
        try:
            staging.rename(target)
            logger.info("built tiny random-weight GLM-4.5V checkpoint at %s", target)
        except OSError:
            if not (target / "config.json").is_file():
                raise  # not a lost race: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _looks_local(model: str) -> bool:
    return os.path.isabs(model) or model.startswith((".", "~")) or Path(model).exists()


def resolve_model_source(model: str, *, cache_dir: Path | None = None) -> str:
    """Turn a model setting into what ``from_pretrained`` takes: a local directory or a hub id.

    Raises BackendError for an empty name, a missing local directory or something that is neither.
    """
    name = model.strip()
    if not name:
        raise BackendError("model name is empty: give 'tiny', a local directory or a hub id")
    if name == TINY:
        return str(tiny_checkpoint_dir(cache_dir))
    if _looks_local(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise BackendError(f"model directory {str(path)!r} does not exist or is not a directory")
        if not (path / "config.json").is_file():
            raise BackendError(f"model directory {str(path)!r} has no config.json: not a saved checkpoint")
        return str(path)
    if not _HUB_ID.match(name):
        raise BackendError(f"model {name!r} is neither an existing local directory nor a hub id (org/name)")
    return name


def resolve_dtype(dtype: str) -> torch.dtype:
    """``auto`` = bfloat16 on CUDA (what GLM-4.5V ships in), float32 on CPU (bf16 matmuls are slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise BackendError(f"unknown dtype {dtype!r}: choose auto, {', '.join(_DTYPES)}") from None


def resolve_device_map(device_map: str | None) -> str | None:
    """``auto`` needs accelerate and an accelerator; on a CPU-only machine plain loading is the same thing."""
    if device_map in (None, "", "none"):
        return None
    if device_map == "auto" and not torch.cuda.is_available():
        return None
    return device_map


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
