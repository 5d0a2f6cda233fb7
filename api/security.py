"""Validation of caller-supplied sources and callback URLs: SSRF guard and local-file confinement.

Used by job submission (sources) and webhooks (callback URLs). Every refusal is a ``Problem(422)`` whose
detail says what to change, with an ``errors`` list shaped like the API's validation errors.

What this guard does not cover, by design (needs network-level egress control):

* DNS rebinding: the host is resolved here, and resolved again later by the worker or the webhook
  sender; a host whose records change in between can still reach a refused address.
* Redirects and playlists: FFmpeg follows HTTP redirects and HLS playlists name further URLs.

The resolver call is blocking: from ``async`` code, run these functions in a thread.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from api.problems import Problem
from vstream.config import ApiSettings

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints: refused even when private networks are allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
WEBHOOK_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 4096
SOURCE_REFUSED = "Source not allowed"
WEBHOOK_REFUSED = "Webhook URL not allowed"


def refuse(field: str, message: str, title: str = "Invalid request") -> Problem:
    """A 422 problem naming the field, in the same shape as the API's validation errors."""
    return Problem(422, title, f"{field}: {message}", errors=[{"field": field, "message": message}])


def validate_source_url(url: str, api: ApiSettings, *, purpose: str = "source") -> str:
    """Check a network source URL (rtsp, http, ...); returns it unchanged. ``purpose`` names the field."""
    parts = _split(url, purpose)
    allowed = [s.lower() for s in api.allowed_schemes]
    if parts.scheme not in allowed:
        raise refuse(
            purpose,
            f"scheme {parts.scheme!r} is not allowed; use one of {', '.join(allowed)}"
            + (" (local files: give a path under a media root)" if parts.scheme == "file" else ""),
            SOURCE_REFUSED,
        )
    _check_host(parts, api, purpose, SOURCE_REFUSED)
    return url


def validate_webhook_url(url: str, api: ApiSettings) -> str:
    """Check a callback URL: http(s), no credentials, a host that resolves to public addresses."""
    parts = _split(url, "url")
    if parts.scheme not in WEBHOOK_SCHEMES:
        raise refuse("url", f"scheme {parts.scheme!r} is not allowed; use http or https", WEBHOOK_REFUSED)
    if parts.username is not None or parts.password is not None:
        raise refuse(
            "url",
            "credentials in the URL are not allowed; remove 'user:password@' and use the webhook secret",
            WEBHOOK_REFUSED,
        )
    _check_host(parts, api, "url", WEBHOOK_REFUSED)
    return url


def _split(url: str, field: str) -> SplitResult:
    if not url or len(url) > MAX_URL_LENGTH:
        raise refuse(field, f"give a URL of 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        # backslashes: URL parsers disagree on them ("http://a\\@b/"), so the host checked may not be used
        raise refuse(
            field, "the URL contains whitespace, backslashes or control characters; percent-encode them"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise refuse(field, f"not a valid URL ({exc})") from exc
    if not parts.scheme or "://" not in url:
        raise refuse(field, "not a URL: give scheme://host/...")
    return parts._replace(scheme=parts.scheme.lower())


def _check_host(parts: SplitResult, api: ApiSettings, field: str, title: str) -> None:
    """``title`` says what was refused: a source or a webhook URL."""
    host = parts.hostname
    if not host:
        raise refuse(field, "the URL has no host; give scheme://host/...", title)
    addresses = resolve(host, parts.port, field, title)
    for addr in addresses:
        if addr in METADATA_ADDRESSES or _embedded_v4(addr) in METADATA_ADDRESSES:
            raise refuse(
                field,
                f"host {host!r} resolves to {addr}, a cloud metadata address; this is never allowed",
                title,
            )
        reason = None if api.allow_private_networks else address_problem(addr)
        if reason:
            logger.info("refused %s host %s -> %s (%s)", field, host, addr, reason)
            raise refuse(
                field,
                f"host {host!r} resolves to {addr}, a {reason} address; only public hosts are allowed "
                "(the server's allow_private_networks setting is off)",
                title,
            )


def resolve(host: str, port: int | None, field: str, title: str = SOURCE_REFUSED) -> list[IPAddress]:
    """Every address ``host`` resolves to; a 422 when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise refuse(field, f"host {host!r} does not resolve ({exc}); check the host name", title) from exc
    out: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        addr = ipaddress.ip_address(raw)
        if addr not in out:
            out.append(addr)
    if not out:
        raise refuse(field, f"host {host!r} has no addresses; check the host name", title)
    return out


def address_problem(addr: IPAddress) -> str | None:
    """Why an address is not a public destination, or None when it is."""
    inner = _embedded_v4(addr)
    if inner is not None:
        reason = address_problem(inner)
        return f"{reason} (IPv4 inside IPv6)" if reason else None
    for reason, flag in (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("private", addr.is_private),
        ("reserved", addr.is_reserved),
    ):
        if flag:
            return reason
    return None if addr.is_global else "non-public"


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


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
