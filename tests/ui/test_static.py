"""The console's files: served with a strict CSP, no inline script, no HTML-parsing sinks in the code."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from api.routes.ui import ASSETS, UI_DIR
from tests.ui.conftest import Console

pytestmark = pytest.mark.integration
SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")


def test_pages_have_a_strict_csp_and_no_framing(console: Console) -> None:
    c = console.client
    assert c.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    for path in ("/ui/", "/ui/app.js", "/ui/pages/timeline.js", "/ui/style.css"):
        r = c.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert "media-src 'self' blob:" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    assert c.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/ui/../api/app.py").status_code == 404
    assert c.get("/ui/nothing.js").status_code == 404


def test_index_has_only_external_module_scripts() -> None:
    scripts: list[dict[str, str | None]] = []
    inline: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "script":
                scripts.append(dict(attrs))
            inline.extend(name for name, _ in attrs if name.startswith("on") or name == "style")

    Parser().feed((UI_DIR / "index.html").read_text())
    assert scripts and all(s.get("src") and s.get("type") == "module" for s in scripts)
    assert not inline, f"inline handlers or styles: {inline}"


def test_no_script_builds_html_from_strings() -> None:
    found = {name: SINKS.findall(path.read_text()) for name, path in ASSETS.items() if name.endswith(".js")}
    assert {n for n, hits in found.items() if hits} == set(), found
    assert len([n for n in ASSETS if n.endswith(".js")]) >= 8, "every page module is served"


def test_no_script_puts_the_key_in_a_url() -> None:
    code = "\n".join(p.read_text() for n, p in ASSETS.items() if n.endswith(".js"))
    assert "localStorage" not in code and "sessionStorage" in code
    assert not re.search(r"[?&](api_key|key|token)=", code)
