"""Review-console fixtures: the real API served by uvicorn on an ephemeral port, workers with the scripted
backend on the real Kafka and Redis, and a real headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright
from pydantic import SecretStr

from api.app import create_app
from tests.conftest import start_worker
from vstream.config import ApiSettings, Settings

ADMIN = "admin-ui-key"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS_SCRIPT = "<script>window.__xss = 1</script>"
XSS_IMG = '<img src=x onerror="window.__xss = 2">'


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def ui_settings(settings: Settings, media: Path) -> Settings:
    api = ApiSettings(admin_key=SecretStr(ADMIN), file_roots=[media], allow_private_networks=True)
    return settings.model_copy(update={"api": api})


@dataclass
class Console:
    base: str  # http://127.0.0.1:<port>
    client: TestClient  # the same app in-process, for setting up keys

    def key(self, *streams: str) -> str:
        r = self.client.post(
            "/v1/keys",
            json={"name": "ui", "streams": list(streams)},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


@pytest.fixture
def console(ui_settings: Settings) -> Iterator[Console]:
    """The API on a real socket (a browser cannot reach a TestClient), plus a TestClient for set-up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ui_settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    try:
        with TestClient(create_app(ui_settings), raise_server_exceptions=False) as client:
            yield Console(f"http://127.0.0.1:{port}", client)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def chromium_path() -> str:
    path = os.environ.get("VSTREAM_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "Debian's chromium is not installed: run deploy/local/bootstrap.sh (apt-get install chromium)"
        )
    return path


# Module scope, not session: the sync API keeps an asyncio loop running in the main thread while it lives,
# which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
        b = pw.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield b
        b.close()


@dataclass
class Tab:
    page: Page
    problems: list[str]  # console errors and CSP violations seen so far

    def csp_violations(self) -> list[str]:
        return [p for p in self.problems if "Content Security Policy" in p]


@pytest.fixture
def open_console(browser: Browser, console: Console) -> Iterator[Any]:
    """``open_console(key)``: a new tab on /ui/ with the key typed into the form (it stays in the tab)."""
    contexts = []

    def open_tab(key: str, hash_: str = "#/streams") -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                problems.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

        def on_dialog(dialog: Dialog) -> None:
            problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(f"{console.base}/ui/{hash_}")
        page.fill("#api-key", key)
        page.click("#key-form button[type=submit]")
        return Tab(page, problems)

    yield open_tab
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


class Workers:
    """Ingest and infer workers with the scripted backend (the model's text is scripted: random tiny
    weights prove plumbing, never answers)."""

    def __init__(
        self, s: Settings, script: Mapping[str, object], tmp: Path, extra_env: Mapping[str, str] | None = None
    ) -> None:
        path = tmp / "script.json"
        path.write_text(json.dumps(script))
        env = {
            "VSTREAM_MODEL__TYPE": "scripted",
            "VSTREAM_MODEL__MODEL": str(path),
            "VSTREAM_MODEL__MAX_WAIT_S": "0.1",
            "VSTREAM_API__ALLOW_PRIVATE_NETWORKS": "true",
            **(extra_env or {}),
        }
        self.procs = [start_worker(s, kind, tmp / f"{kind}.log", env) for kind in ("ingest", "infer")]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)


def det(
    label: str, start: float, end: float, conf: float = 0.85, description: str = "", box: str = ""
) -> str:
    """One scripted detection, as the model would print it."""
    item: dict[str, object] = {
        "label": label,
        "start": start,
        "end": end,
        "confidence": conf,
        "description": description or f"{label} seen",
    }
    text = json.dumps(item)
    return text[:-1] + f', "box": {box}}}' if box else text
