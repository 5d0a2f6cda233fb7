"""Outbound URL safety (SSRF guard): the check of a webhook callback URL, and the host checks that
``api.security`` also applies to network sources. Lives outside ``api`` because the webhook worker checks
the URL again before every attempt (a host's addresses may change after registration).

Every refusal is an :class:`UnsafeUrl` (a ``ValueError``) naming the field, what to change and what was
refused; the API maps it to its 422 problem, the dispatcher to a failed delivery.

What this guard does not cover, by design (needs network-level egress control):

* DNS rebinding: the host is resolved here, and resolved again later by the worker or the webhook
  sender; a host whose records change in between can still reach a refused address.
* Redirects and playlists: FFmpeg follows HTTP redirects and HLS playlists name further URLs.

The resolver call is blocking: from ``async`` code, run these functions in a thread.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import SplitResult, urlsplit

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
INVALID = "Invalid request"
SOURCE_REFUSED = "Source not allowed"
WEBHOOK_REFUSED = "Webhook URL not allowed"


class UnsafeUrl(ValueError):
    """A URL refused by the guard. ``str()`` is ``"<field>: <message>"``, the API's problem detail."""

    def __init__(self, field: str, message: str, title: str = INVALID) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.title = field, message, title


def check_webhook_url(url: str, api: ApiSettings) -> str:
    """Check a callback URL: http(s), no credentials, a host that resolves to public addresses (private
    ones too when ``api.allow_private_networks``); returns it unchanged or raises :class:`UnsafeUrl`."""
    parts = split_url(url, "url")
    if parts.scheme not in WEBHOOK_SCHEMES:
        raise UnsafeUrl("url", f"scheme {parts.scheme!r} is not allowed; use http or https", WEBHOOK_REFUSED)
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl(
            "url",
            "credentials in the URL are not allowed; remove 'user:password@' and use the webhook secret",
            WEBHOOK_REFUSED,
        )
    check_host(parts, api, "url", WEBHOOK_REFUSED)
    return url


def split_url(url: str, field: str) -> SplitResult:
    """The parts of a well-formed ``scheme://host/...`` URL, the scheme lower-cased."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(field, f"give a URL of 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        # backslashes: URL parsers disagree on them ("http://a\\@b/"), so the host checked may not be used
        raise UnsafeUrl(
            field, "the URL contains whitespace, backslashes or control characters; percent-encode them"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise UnsafeUrl(field, f"not a valid URL ({exc})") from exc
    if not parts.scheme or "://" not in url:
        raise UnsafeUrl(field, "not a URL: give scheme://host/...")
    return parts._replace(scheme=parts.scheme.lower())


def check_host(parts: SplitResult, api: ApiSettings, field: str, title: str) -> None:
    """Refuse a host that resolves to a metadata or (unless allowed) non-public address. ``title`` says
    what was refused: a source or a webhook URL."""
    host = parts.hostname
    if not host:
        raise UnsafeUrl(field, "the URL has no host; give scheme://host/...", title)
    for addr in resolve(host, parts.port, field, title):
        if addr in METADATA_ADDRESSES or _embedded_v4(addr) in METADATA_ADDRESSES:
            raise UnsafeUrl(
                field,
                f"host {host!r} resolves to {addr}, a cloud metadata address; this is never allowed",
                title,
            )
        reason = None if api.allow_private_networks else address_problem(addr)
        if reason:
            logger.info("refused %s host %s -> %s (%s)", field, host, addr, reason)
            raise UnsafeUrl(
                field,
                f"host {host!r} resolves to {addr}, a {reason} address; only public hosts are allowed "
                "(the server's allow_private_networks setting is off)",
                title,
            )


def resolve(host: str, port: int | None, field: str, title: str = SOURCE_REFUSED) -> list[IPAddress]:
    """Every address ``host`` resolves to; :class:`UnsafeUrl` when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeUrl(field, f"host {host!r} does not resolve ({exc}); check the host name", title) from exc
    out: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        addr = ipaddress.ip_address(raw)
        if addr not in out:
            out.append(addr)
    if not out:
        raise UnsafeUrl(field, f"host {host!r} has no addresses; check the host name", title)
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
