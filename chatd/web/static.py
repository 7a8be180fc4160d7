"""The web page: the built files of `static/dist/` served at `/` with a strict Content-Security-Policy.

The page is built by `scripts/setup_frontend.sh` (npm ci + esbuild, from `static/package-lock.json`);
this module only serves what the build wrote. Every URL in the page is relative, so it also works
behind a reverse proxy under a path prefix.
"""
from __future__ import annotations

import os
import re
from typing import Any

import tornado.web

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST_DIR = os.path.join(REPO_ROOT, "static", "dist")

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


class PageHandler(tornado.web.StaticFileHandler):
    """The built page: `index.html` is revalidated on every load, versioned assets (`?v=`) are cached."""

    def set_extra_headers(self, path: str) -> None:
        """CSP and friends on every file; never cache the HTML (it names the current asset versions)."""
        security_headers(self)
        if path.endswith(".html") or path == "":
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
            "chatd checkout, then reload. The API is available at <code>api/v1/</code>.</p>"
        )


def routes(settings: dict) -> list:
    """The page's routes (last: they match everything not matched before)."""
    root = settings.get("static_dir") or DIST_DIR
    if not os.path.isfile(os.path.join(root, "index.html")):
        return [(r"/(.*)", NotBuiltHandler)]
    return [(r"/(.*)", PageHandler, {"path": root, "default_filename": "index.html"})]
