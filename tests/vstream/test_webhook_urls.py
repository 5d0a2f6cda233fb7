"""The callback URL guard's typed refusal (the address rules themselves: tests/api/test_security.py)."""

from __future__ import annotations

import pytest

from vstream.config import ApiSettings
from vstream.webhook_urls import INVALID, WEBHOOK_REFUSED, UnsafeUrl, check_webhook_url

API = ApiSettings()
PRIVATE_OK = ApiSettings(allow_private_networks=True)


def refusal(url: str, api: ApiSettings = API) -> UnsafeUrl:
    with pytest.raises(UnsafeUrl) as info:
        check_webhook_url(url, api)
    return info.value


def test_a_refusal_is_a_value_error_naming_field_and_fix() -> None:
    exc = refusal("https://user:pw@hooks.example.com/x")
    assert isinstance(exc, ValueError)
    assert exc.field == "url" and exc.title == WEBHOOK_REFUSED
    assert "credentials" in exc.message and str(exc) == f"url: {exc.message}"


@pytest.mark.parametrize(
    ("url", "title", "words"),
    [
        ("ftp://hooks.example.com/x", WEBHOOK_REFUSED, "scheme 'ftp'"),
        ("http://127.0.0.1:9/x", WEBHOOK_REFUSED, "loopback"),
        ("http://10.1.2.3/x", WEBHOOK_REFUSED, "private"),
        ("http://169.254.169.254/latest", WEBHOOK_REFUSED, "metadata"),
        ("http://a b/x", INVALID, "whitespace"),
        ("hooks.example.com/x", INVALID, "not a URL"),
        ("http://no-such-host.invalid/x", WEBHOOK_REFUSED, "does not resolve"),
    ],
)
def test_refusals(url: str, title: str, words: str) -> None:
    exc = refusal(url)
    assert exc.title == title and words in exc.message, exc


def test_private_networks_when_allowed_but_never_metadata() -> None:
    assert check_webhook_url("http://127.0.0.1:9/x", PRIVATE_OK) == "http://127.0.0.1:9/x"
    assert "metadata" in refusal("http://169.254.169.254/", PRIVATE_OK).message
