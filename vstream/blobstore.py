"""Claim-check store for clips larger than Kafka's message limit.

The clip's full envelope goes to the store; Kafka carries the same clip header with no frames and a
``payload_ref``. ``open_blob_store`` picks the store from ``VSTREAM_BLOBS__URL``: a local directory
(``file://``, the single-host default) or an S3-compatible bucket (``s3://bucket/prefix``) that every
host can reach. A blob is deleted once its clip is settled; the ones never settled (a clip dead-lettered
by hand, a topic deleted) are swept once older than ``ttl_s`` by the workers that write blobs, because
s3proxy and many other S3-compatible servers do not implement bucket lifecycle rules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from vstream.config import BlobSettings

if TYPE_CHECKING:
    from obstore.store import S3Store

logger = logging.getLogger(__name__)


class BlobError(RuntimeError):
    pass


class BlobReader(Protocol):
    def get(self, ref: str) -> bytes: ...


class BlobStore(BlobReader, Protocol):
    """What the ingest worker writes, the infer worker reads and deletes, and the sweeper expires."""

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (``stream/clip.vsc``); returns the reference Kafka carries."""
        ...

    def delete(self, ref: str) -> None:
        """Remove a blob; a missing one is not an error (settling twice is harmless)."""
        ...

    def sweep(self, older_than_s: float) -> int:
        """Delete blobs last written more than ``older_than_s`` ago; returns how many."""
        ...


def _check_key(key: str) -> str:
    if not key or ".." in key.split("/") or key.startswith("/"):
        raise BlobError(f"bad blob key {key!r}")
    return key


class LocalBlobStore:
    """Blobs as files under ``root``; refs are ``file://`` URLs that must stay inside ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def put(self, key: str, data: bytes) -> str:
        path = self.root / _check_key(key)
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

    def sweep(self, older_than_s: float) -> int:
        cutoff, removed = time.time() - older_than_s, 0
        for path in self.root.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # settled by an infer worker meanwhile
        return removed

    def _resolve(self, ref: str) -> Path:
        parts = urlsplit(ref)
        if parts.scheme != "file":
            raise BlobError(f"unsupported blob reference {ref!r} (this store reads file:// refs)")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise BlobError(f"blob reference outside the store: {ref!r}")
        return path


class S3BlobStore:
    """Blobs as objects under ``s3://bucket/prefix/``; refs name bucket and full key."""

    def __init__(self, store: S3Store, bucket: str, prefix: str) -> None:
        self.store, self.bucket, self.prefix = store, bucket, prefix.strip("/")

    def put(self, key: str, data: bytes) -> str:
        import obstore

        obstore.put(self.store, _check_key(key), data)  # one PUT: S3 never shows half an object
        return f"s3://{self.bucket}/{self._full(key)}"

    def get(self, ref: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self.store, self._relative(ref)).bytes())
        except FileNotFoundError as exc:  # obstore's NotFoundError subclasses it
            raise BlobError(f"claim-check blob missing: {ref}") from exc

    def delete(self, ref: str) -> None:
        import obstore

        with contextlib.suppress(FileNotFoundError):  # deleting twice is harmless
            obstore.delete(self.store, self._relative(ref))

    def sweep(self, older_than_s: float) -> int:
        import obstore

        cutoff = datetime.now(UTC).timestamp() - older_than_s
        expired = [
            meta["path"]
            for chunk in obstore.list(self.store, chunk_size=1000)
            for meta in chunk
            if meta["last_modified"].timestamp() < cutoff
        ]
        for start in range(0, len(expired), 1000):  # S3 DeleteObjects takes at most 1000 keys
            obstore.delete(self.store, expired[start : start + 1000])
        return len(expired)

    def check(self) -> None:
        """One LIST: wrong endpoint, bucket or credentials fail here, at start-up, not at the first clip."""
        import obstore

        try:
            next(iter(obstore.list(self.store, chunk_size=1)), None)
        except Exception as exc:  # obstore raises many kinds; all mean "unusable"
            where = f"s3://{self.bucket}/{self.prefix}"
            raise BlobError(f"blob store {where} unusable: {_first_line(exc)}") from exc

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, ref: str) -> str:
        parts = urlsplit(ref)
        head = f"{self.prefix}/" if self.prefix else ""
        key = parts.path.lstrip("/")
        if parts.scheme != "s3" or parts.netloc != self.bucket or not key.startswith(head):
            raise BlobError(f"blob reference outside the store s3://{self.bucket}/{self.prefix}: {ref!r}")
        return _check_key(key[len(head) :])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


class SweepingBlobStore:
    """A store whose writes also expire old blobs: at most one background sweep per interval, so the
    process that produces blobs is the one that bounds them, with no extra service to deploy."""

    def __init__(self, inner: LocalBlobStore | S3BlobStore, ttl_s: float, interval_s: float) -> None:
        self.inner, self.ttl_s, self.interval_s = inner, ttl_s, interval_s
        self._next_sweep = 0.0  # the first write sweeps: short-lived processes clean up too
        self._lock = threading.Lock()
        self.sweeper: threading.Thread | None = None  # the latest sweep (tests join it)

    def put(self, key: str, data: bytes) -> str:
        ref = self.inner.put(key, data)
        self.maybe_sweep()
        return ref

    def get(self, ref: str) -> bytes:
        return self.inner.get(ref)

    def delete(self, ref: str) -> None:
        self.inner.delete(ref)

    def sweep(self, older_than_s: float) -> int:
        return self.inner.sweep(older_than_s)

    def maybe_sweep(self) -> threading.Thread | None:
        """Start a background sweep if one is due and none is running; returns its thread."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_sweep or (self.sweeper is not None and self.sweeper.is_alive()):
                return None
            self._next_sweep = now + self.interval_s
            self.sweeper = threading.Thread(target=self._sweep, name="blob-sweeper", daemon=True)
            self.sweeper.start()
            return self.sweeper

    def _sweep(self) -> None:
        try:
            removed = self.inner.sweep(self.ttl_s)
        except Exception:  # a failed sweep is retried next interval; it must never fail a write
            logger.exception("blob sweep failed")
            return
        if removed:
            logger.info("blob sweep removed %d blobs older than %.0f s", removed, self.ttl_s)


def open_blob_store(settings: BlobSettings) -> SweepingBlobStore:
    """The store ``settings.url`` names (the ``root`` directory when unset); checks S3 access now."""
    url = settings.url or settings.root.resolve().as_uri()
    parts = urlsplit(url)
    inner: LocalBlobStore | S3BlobStore
    if parts.scheme == "file":
        inner = LocalBlobStore(unquote(parts.path))
    elif parts.scheme == "s3" and parts.netloc:
        prefix = parts.path.strip("/")
        inner = S3BlobStore(_s3_client(settings, parts.netloc, prefix), parts.netloc, prefix)
        inner.check()
    else:
        raise BlobError(
            f"bad blob store URL {url!r} (VSTREAM_BLOBS__URL): use file:///dir or s3://bucket/prefix"
        )
    return SweepingBlobStore(inner, settings.ttl_s, settings.sweep_interval_s)


def _s3_client(settings: BlobSettings, bucket: str, prefix: str) -> S3Store:
    from obstore.store import S3Store

    config: dict[str, str | bool] = {
        "region": settings.s3_region,
        "virtual_hosted_style_request": not settings.s3_path_style,
    }
    if settings.s3_endpoint:
        config["endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id is not None:
        config["access_key_id"] = settings.s3_access_key_id.get_secret_value()
    if settings.s3_secret_access_key is not None:
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    try:
        return S3Store(
            bucket,
            prefix=prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options={"allow_http": settings.s3_allow_http, "timeout": "60s"},
        )
    except Exception as exc:  # e.g. a malformed endpoint URL
        raise BlobError(f"bad S3 settings for s3://{bucket}/{prefix}: {_first_line(exc)}") from exc
