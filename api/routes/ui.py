"""The review console: static pages under ``/ui``, served with a strict Content-Security-Policy.

The pages are hand-written ES modules in ``api/ui`` (no build step, no CDN). They call the same API with
the key the reviewer types, kept in ``sessionStorage`` and sent as a header, never in a URL. The CSP
allows scripts and styles from this origin only (no inline script, no ``eval``), images from this origin
and ``blob:`` (thumbnails are fetched with the key and shown as object URLs), media from this origin
(``/v1/media/{token}``) and ``blob:`` (the reel), and no framing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from api.problems import Problem

logger = logging.getLogger(__name__)
router = APIRouter(tags=["ui"], include_in_schema=False)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _assets() -> dict[str, Path]:
    """Relative name -> file, for the files of known types: nothing else under the folder is served."""
    return {
        p.relative_to(UI_DIR).as_posix(): p
        for p in sorted(UI_DIR.rglob("*"))
        if p.is_file() and p.suffix in TYPES
    }


ASSETS = _assets()


@router.get("/ui")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/")
async def ui_index() -> Response:
    return _asset("index.html")


@router.get("/ui/{name:path}")
async def ui_asset(name: str) -> Response:
    return _asset(name)


def _asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        raise Problem(404, "Not found", f"the console has no file {name!r}")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=SECURITY_HEADERS)
