"""Validation of caller-supplied sources and callback URLs: SSRF guard and local-file confinement.

Used by job submission (sources) and webhooks (callback URLs). Every refusal is a ``Problem(422)`` whose
detail says what to change, with an ``errors`` list shaped like the API's validation errors. The network
checks (host resolution, refused addresses, the callback URL rules) live in ``vstream.webhook_urls``,
which the webhook worker uses too; here their :class:`UnsafeUrl` becomes the 422 problem. See that
module for what the guard does not cover (DNS rebinding, redirects).

The resolver call is blocking: from ``async`` code, run these functions in a thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from api.problems import Problem
from vstream.config import ApiSettings
from vstream.webhook_urls import (
    INVALID,
    SOURCE_REFUSED,
    UnsafeUrl,
    check_host,
    check_webhook_url,
    split_url,
)

logger = logging.getLogger(__name__)


def refuse(field: str, message: str, title: str = INVALID) -> Problem:
    """A 422 problem naming the field, in the same shape as the API's validation errors."""
    return Problem(422, title, f"{field}: {message}", errors=[{"field": field, "message": message}])


def url_problem(exc: UnsafeUrl) -> Problem:
    """The 422 problem of a URL the guard refused."""
    return refuse(exc.field, exc.message, exc.title)


def validate_source_url(url: str, api: ApiSettings, *, purpose: str = "source") -> str:
    """Check a network source URL (rtsp, http, ...); returns it unchanged. ``purpose`` names the field."""
    try:
        parts = split_url(url, purpose)
        allowed = [s.lower() for s in api.allowed_schemes]
        if parts.scheme not in allowed:
            raise UnsafeUrl(
                purpose,
                f"scheme {parts.scheme!r} is not allowed; use one of {', '.join(allowed)}"
                + (" (local files: give a path under a media root)" if parts.scheme == "file" else ""),
                SOURCE_REFUSED,
            )
        check_host(parts, api, purpose, SOURCE_REFUSED)
    except UnsafeUrl as exc:
        raise url_problem(exc) from exc
    return url


def validate_webhook_url(url: str, api: ApiSettings) -> str:
    """Check a callback URL (``vstream.webhook_urls.check_webhook_url``); a 422 problem when refused."""
    try:
        return check_webhook_url(url, api)
    except UnsafeUrl as exc:
        raise url_problem(exc) from exc


def validate_file_source(path: str, api: ApiSettings) -> Path:
    """A regular file under one of ``api.file_roots``; returns its resolved path (symlinks followed).

    Accepts a path or a ``file://`` URL. A relative path is looked up under each root in order.
    """
    if not api.file_roots:
        raise refuse(
            "source",
            "local files are not accepted by this server (no file roots configured); give a URL",
            SOURCE_REFUSED,
        )
    raw = _file_path(path)
    if ".." in Path(raw).parts:
        raise refuse("source", "the path must not contain '..'; give a path inside a media root")
    roots = [Path(r).absolute() for r in api.file_roots]
    if Path(raw).is_absolute():
        candidates = [Path(os.path.normpath(raw))]
        if not any(_under(candidates[0], r) or _under(candidates[0], _real(r)) for r in roots):
            raise refuse("source", f"{raw!r} is outside the media roots; {_roots_hint(roots)}")
    else:
        candidates = [r / raw for r in roots]
    for candidate in candidates:
        found = _resolve_in_roots(candidate, roots)
        if found is not None:
            return found
    raise refuse("source", f"no such file: {raw!r}; {_roots_hint(roots)}")


def _file_path(path: str) -> str:
    if "\x00" in path or not path.strip():
        raise refuse("source", "give a non-empty file path without NUL characters")
    if not path.lower().startswith("file:"):
        return path
    parts = urlsplit(path)
    if parts.netloc not in ("", "localhost"):
        raise refuse("source", f"file URLs must name a local file, not host {parts.netloc!r}")
    return unquote(parts.path)


def _resolve_in_roots(candidate: Path, roots: list[Path]) -> Path | None:
    """The real path of ``candidate`` if it exists; a 422 when it escapes the roots or is no file."""
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, no permission
        return None
    if not any(_under(real, _real(r)) for r in roots):
        raise refuse("source", f"'{candidate}' leads outside the media roots (symlink); {_roots_hint(roots)}")
    if not real.is_file():
        raise refuse("source", f"'{candidate}' is not a regular file; give a video file")
    return real


def _real(root: Path) -> Path:
    try:
        return root.resolve(strict=True)
    except (OSError, RuntimeError):
        return root


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _roots_hint(roots: list[Path]) -> str:
    return "files must lie under " + ", ".join(str(r) for r in roots)
