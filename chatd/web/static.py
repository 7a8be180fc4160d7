"""The web page: the built page served at `/` with a strict Content-Security-Policy.

The page is built by `scripts/setup_frontend.sh` (npm ci + esbuild, from `static/package-lock.json`);
this module only serves what the build wrote. Every URL in the page is relative, so it also works
behind a reverse proxy under a path prefix.

Which build is served (`page_dir`): the `static_dir` setting when set; else the copy packaged
inside chatd (`chatd/web/dist/`, put there when a wheel is built, found through
`importlib.resources`); else, in a source checkout (an editable install, `make run`),
`static/dist/` of the checkout. A checkout never has the packaged copy (the wheel build writes
it into the build directory only), so `make frontend` changes what `make run` serves.

Caching: a file whose URL names its content (the `?v=` the build appends is the first 12 hex
digits of the file's SHA-256, or a hex hash in the file name) is `public, max-age=31536000,
immutable`; everything else, `index.html` first, is `no-cache` (revalidated with its ETag).
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

import tornado.web

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST_DIR = os.path.join(REPO_ROOT, "static", "dist")
IMMUTABLE = "public, max-age=31536000, immutable"

# A hash in a file name: `app.3f2a9c1b.js`, `app-3f2a9c1b7d4e.css`.
_HASHED_NAME = re.compile(r"[.-][0-9a-f]{8,64}\.[A-Za-z0-9]+(?:\.map)?$")


def packaged_dir() -> str | None:
    """The page packaged inside chatd (`chatd/web/dist`), or None when this chatd has none."""
    dist = importlib.resources.files("chatd.web").joinpath("dist")
    if isinstance(dist, Path) and (dist / "index.html").is_file():
        return str(dist)
    return None


def page_dir(static_dir: str = "") -> str | None:
    """The directory served at `/`: `static_dir`, the packaged page, or a checkout's static/dist."""
    if static_dir:
        return static_dir
    packaged = packaged_dir()
    if packaged:
        return packaged
    return DIST_DIR if os.path.isfile(os.path.join(DIST_DIR, "index.html")) else None

# A Host header we are willing to echo into the CSP (host, IPv4, [IPv6], optional port).
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def content_security_policy(host: str | None) -> str:
    """The page's CSP; WebSocket connections are limited to the page's own host when the Host header is sane."""
    if host and _HOST.match(host):
        connect = f"'self' ws://{host} wss://{host}"
    else:
        connect = "'self'"  # CSP level 3: 'self' also matches ws:/wss: to the page's own host
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'; manifest-src 'self'; worker-src 'none'"
    )


def security_headers(handler: tornado.web.RequestHandler) -> None:
    """Headers for every response of the page."""
    handler.set_header("Content-Security-Policy", content_security_policy(handler.request.host))
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Cross-Origin-Opener-Policy", "same-origin")
    handler.set_header("Cross-Origin-Resource-Policy", "same-origin")
    handler.set_header("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")


def content_digest(path: str, cache: dict[tuple[str, int, int], str]) -> str:
    """The SHA-256 of a file (hex), computed once per version of the file (kept in `cache`)."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    digest = cache.get(key)
    if digest is None:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        cache[key] = digest
    return digest


class PageHandler(tornado.web.StaticFileHandler):
    """The built page: `index.html` is revalidated on every load, content-addressed assets are immutable."""

    def initialize(self, path: str, default_filename: str | None = None,  # type: ignore[override]
                   digests: dict[tuple[str, int, int], str] | None = None) -> None:
        """The page's directory, and the application's cache of file digests."""
        super().initialize(path, default_filename)
        self.digests = {} if digests is None else digests

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        """No Expires/max-age from Tornado: set_extra_headers decides Cache-Control."""
        return 0

    def names_its_content(self, path: str) -> bool:
        """Whether this URL changes whenever the file does (a hashed name, or `?v=` matching the content)."""
        if _HASHED_NAME.search(path):
            return True
        version = self.get_query_argument("v", "")
        if not re.fullmatch(r"[0-9a-f]{8,64}", version) or not self.absolute_path:
            return False
        return content_digest(self.absolute_path, self.digests).startswith(version)

    def set_extra_headers(self, path: str) -> None:
        """CSP and friends on every file; cache only what a URL pins down (never the HTML)."""
        security_headers(self)
        if not path.endswith(".html") and path != "" and self.names_its_content(path):
            self.set_header("Cache-Control", IMMUTABLE)
        else:
            self.set_header("Cache-Control", "no-cache")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A plain error page that obeys the same CSP."""
        security_headers(self)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {self._reason}\n")


class NotBuiltHandler(tornado.web.RequestHandler):
    """Shown at `/` when `static/dist/` is missing: how to build the page."""

    def get(self, path: str = "") -> None:
        """503 with instructions (no inline styles or scripts, so the CSP still holds)."""
        security_headers(self)
        self.set_status(503)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            "<!doctype html><meta charset=utf-8><title>chatd</title>"
            "<h1>chatd is running, but its web page is not built</h1>"
            "<p>Run <code>make frontend</code> (or <code>bash scripts/setup_frontend.sh</code>) in the "
            "chatd checkout, or install chatd from a wheel (it contains the page), then restart. "
            "The API is available at <code>api/v1/</code>.</p>"
        )


def routes(settings: dict) -> list:
    """The page's routes (last: they match everything not matched before)."""
    chatd_settings = settings.get("chatd_settings")
    root = page_dir(getattr(chatd_settings, "static_dir", "") or settings.get("static_dir") or "")
    if root is None or not os.path.isfile(os.path.join(root, "index.html")):
        return [(r"/(.*)", NotBuiltHandler)]
    return [(r"/(.*)", PageHandler, {"path": root, "default_filename": "index.html", "digests": {}})]
