"""SSRF guard and local-file confinement: the functions themselves, and job submission through the API."""

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.problems import Problem
from api.security import validate_file_source, validate_source_url, validate_webhook_url
from vstream.config import ApiSettings

pytestmark = pytest.mark.integration

_real_getaddrinfo = socket.getaddrinfo
FAKE_DNS = {
    "cams.example.com": ["93.184.216.34"],
    "hooks.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "split.example.com": ["93.184.216.34", "10.0.0.5"],  # one public, one private record
    "metadata.example.com": ["169.254.169.254"],
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve the hosts of FAKE_DNS offline; everything else (Kafka, Redis) as usual."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in FAKE_DNS:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        out = []
        for addr in FAKE_DNS[host]:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port or 0, 0, 0) if family == socket.AF_INET6 else (addr, port or 0)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _refused(call: Callable[[], object]) -> str:
    with pytest.raises(Problem) as info:
        call()
    assert info.value.status == 422
    detail: str = info.value.detail
    return detail


# ---- network sources ---------------------------------------------------------------------------------------

API = ApiSettings()
REFUSED_URLS = [
    ("http://127.0.0.1/x.m3u8", "loopback"),
    ("http://localhost:8080/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://10.1.2.3/", "private"),
    ("rtsp://192.168.0.10/stream1", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback (IPv4 inside IPv6)"),
    ("http://[2002:a00:1::1]/", "private (IPv4 inside IPv6)"),  # 6to4 of 10.0.0.1
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("rtsp://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "non-public"),
    ("ftp://93.184.216.34/a.mp4", "scheme 'ftp' is not allowed"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("gopher://93.184.216.34/", "use one of rtsp"),
    ("http:///no-host", "no host"),
    ("http://no-such-host.invalid/live", "does not resolve"),
    ("http://93.184.216.34:99999/", "not a valid URL"),
    ("http://93.184.216.34/a b", "whitespace"),
    ("http://127.0.0.1\\@93.184.216.34/", "backslashes"),
    ("93.184.216.34/live", "not a URL"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_unsafe_source_urls_are_refused(url: str, reason: str) -> None:
    detail = _refused(lambda: validate_source_url(url, API))
    assert detail.startswith("source: ") and reason in detail


def test_every_address_of_a_host_is_checked(fake_dns: None) -> None:
    assert "10.0.0.5" in _refused(lambda: validate_source_url("rtsp://split.example.com/a", API))
    detail = _refused(lambda: validate_source_url("http://metadata.example.com/", API, purpose="url"))
    assert detail.startswith("url: ") and "cloud metadata" in detail


def test_public_hosts_are_allowed(fake_dns: None) -> None:
    url = "rtsp://admin:pw@cams.example.com:554/Streaming/Channels/101"
    assert validate_source_url(url, API) == url
    assert validate_source_url("srt://93.184.216.34:9000", API) == "srt://93.184.216.34:9000"


def test_allowing_private_networks_still_refuses_metadata() -> None:
    lan = ApiSettings(allow_private_networks=True)
    assert validate_source_url("rtsp://192.168.0.10/stream1", lan) == "rtsp://192.168.0.10/stream1"
    assert validate_source_url("http://127.0.0.1:8080/x", lan) == "http://127.0.0.1:8080/x"
    assert "cloud metadata" in _refused(lambda: validate_source_url("http://169.254.169.254/", lan))


def test_allowed_schemes_come_from_the_settings() -> None:
    only_rtsp = ApiSettings(allowed_schemes=["rtsp"])
    assert "use one of rtsp" in _refused(lambda: validate_source_url("http://93.184.216.34/", only_rtsp))
    assert validate_source_url("RTSP://93.184.216.34/x", only_rtsp) == "RTSP://93.184.216.34/x"


# ---- webhook URLs ----------------------------------------------------------------------------------------


def test_webhook_urls(fake_dns: None) -> None:
    assert (
        validate_webhook_url("https://hooks.example.com/vstream", API) == "https://hooks.example.com/vstream"
    )
    for url, reason in [
        ("rtsp://hooks.example.com/", "use http or https"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://token@hooks.example.com/", "credentials"),
        ("http://127.0.0.1:9000/hook", "loopback"),
        ("https://split.example.com/", "private"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ]:
        detail = _refused(lambda url=url: validate_webhook_url(url, API))  # type: ignore[misc]
        assert detail.startswith("url: ") and reason in detail, (url, detail)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://169.254.169.254/", "http:///no-host", "http://no-such-host.invalid/"],
)
def test_refusals_are_titled_by_what_was_refused(url: str) -> None:
    with pytest.raises(Problem) as source:
        validate_source_url(url, API)
    with pytest.raises(Problem) as webhook:
        validate_webhook_url(url, API)
    assert source.value.title == "Source not allowed"
    assert webhook.value.title == "Webhook URL not allowed"


# ---- local files -------------------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "day1").mkdir(parents=True)
    (root / "day1" / "a.mp4").write_bytes(b"video")
    (tmp_path / "secret.mp4").write_bytes(b"outside")
    return root


def test_files_under_the_root_resolve_to_their_real_path(media: Path, tmp_path: Path) -> None:
    api = ApiSettings(file_roots=[media])
    real = (media / "day1" / "a.mp4").resolve()
    (media / "latest.mp4").symlink_to(media / "day1" / "a.mp4")  # a link that stays inside is fine
    for given in [
        "day1/a.mp4",
        str(media / "day1" / "a.mp4"),
        f"file://{media}/day1/a.mp4",
        f"file://localhost{media}/day1/./a.mp4",
        "latest.mp4",
        "./day1/a.mp4",
    ]:
        assert validate_file_source(given, api) == real, given


def test_relative_paths_are_looked_up_under_each_root(media: Path, tmp_path: Path) -> None:
    second = tmp_path / "archive"
    second.mkdir()
    (second / "old.mp4").write_bytes(b"old")
    api = ApiSettings(file_roots=[media, second])
    assert validate_file_source("old.mp4", api) == (second / "old.mp4").resolve()


def test_path_escapes_are_refused(media: Path, tmp_path: Path) -> None:
    api = ApiSettings(file_roots=[media])
    (media / "escape.mp4").symlink_to(tmp_path / "secret.mp4")
    (media / "outside-dir").symlink_to(tmp_path, target_is_directory=True)
    for given, reason in [
        ("../secret.mp4", "'..'"),
        ("day1/../../secret.mp4", "'..'"),
        (f"{media}/../secret.mp4", "'..'"),
        ("/etc/passwd", "outside the media roots"),
        (str(tmp_path / "secret.mp4"), "outside the media roots"),
        ("file:///etc/passwd", "outside the media roots"),
        ("file://fileserver/share/a.mp4", "not host 'fileserver'"),
        ("escape.mp4", "leads outside the media roots"),
        ("outside-dir/secret.mp4", "leads outside the media roots"),
        ("day1", "not a regular file"),
        ("day1/missing.mp4", "no such file"),
        ("a\x00.mp4", "NUL"),
    ]:
        detail = _refused(lambda given=given: validate_file_source(given, api))  # type: ignore[misc]
        assert detail.startswith("source: ") and reason in detail, (given, detail)


def test_files_are_refused_when_no_root_is_configured(media: Path) -> None:
    detail = _refused(lambda: validate_file_source(str(media / "day1" / "a.mp4"), ApiSettings()))
    assert "no file roots configured" in detail


# ---- through the API ---------------------------------------------------------------------------------------


def _post(client: TestClient, admin: dict[str, str], source: str) -> Any:
    return client.post("/v1/jobs", json={"stream_id": "cam-1", "source": source}, headers=admin)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("http://127.0.0.1/live", "loopback"),
        ("http://localhost/live", "loopback"),
        ("http://10.1.2.3/live", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]/live", "loopback"),
        ("rtsp://192.168.0.10/stream1", "private"),
        ("ftp://93.184.216.34/a.mp4", "scheme 'ftp' is not allowed"),
        ("http://no-such-host.invalid/live", "does not resolve"),
        ("file:///etc/passwd", "outside the media roots"),
        ("/etc/passwd", "outside the media roots"),
        ("../../etc/passwd", "'..'"),
        ("nothing-here.mp4", "no such file"),
    ],
)
def test_api_refuses_unsafe_sources(
    client: TestClient, admin: dict[str, str], source: str, reason: str
) -> None:
    r = _post(client, admin, source)
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"] and r.json()["errors"][0]["field"] == "source"
    assert client.get("/v1/jobs", headers=admin).json()["items"] == []


def test_api_refuses_a_symlink_out_of_the_root(
    client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "secret.mp4").write_bytes(b"outside")
    (tmp_path / "media" / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    r = _post(client, admin, "link.mp4")
    assert r.status_code == 422 and "leads outside the media roots" in r.json()["detail"]


def test_api_accepts_public_hosts_and_files_under_the_root(
    client: TestClient, admin: dict[str, str], tmp_path: Path, fake_dns: None
) -> None:
    r = _post(client, admin, "rtsp://viewer:pw@cams.example.com/live")
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "rtsp://cams.example.com/live" and r.json()["live"] is True
    (tmp_path / "media" / "clip.mp4").write_bytes(b"video")
    r = _post(client, admin, "clip.mp4")
    assert r.status_code == 201 and r.json()["source"] == str((tmp_path / "media" / "clip.mp4").resolve())
