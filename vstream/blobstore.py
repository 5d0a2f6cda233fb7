"""Claim-check store for clips larger than Kafka's message limit.

The clip's full envelope goes to the store; Kafka carries the same clip header with no frames and a
``payload_ref``. A local directory is the default (shared storage in a multi-host deployment).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit


class BlobError(RuntimeError):
    pass


class BlobReader(Protocol):
    def get(self, ref: str) -> bytes: ...


class LocalBlobStore:
    """Blobs as files under ``root``; refs are ``file://`` URLs that must stay inside ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: a reader never sees half a clip
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def get(self, ref: str) -> bytes:
        path = self._resolve(ref)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobError(f"claim-check blob missing: {ref}") from exc

    def delete(self, ref: str) -> None:
        self._resolve(ref).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        if not key or ".." in key.split("/") or key.startswith("/"):
            raise BlobError(f"bad blob key {key!r}")
        return self.root / key

    def _resolve(self, ref: str) -> Path:
        parts = urlsplit(ref)
        if parts.scheme != "file":
            raise BlobError(f"unsupported blob reference {ref!r} (this store reads file:// refs)")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise BlobError(f"blob reference outside the store: {ref!r}")
        return path
