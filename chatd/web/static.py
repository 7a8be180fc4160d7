"""The web page: static files served at `/` with a strict Content-Security-Policy."""
from __future__ import annotations

import os

import tornado.web

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "static")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class PageHandler(tornado.web.StaticFileHandler):
    """Static files with security headers."""

    def set_extra_headers(self, path: str) -> None:
        """CSP and friends on every file."""
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")


def routes(settings: dict) -> list:
    """The page's routes (last: they match everything not matched before)."""
    root = settings.get("static_dir") or STATIC_DIR
    return [(r"/(.*)", PageHandler, {"path": root, "default_filename": "index.html"})]
