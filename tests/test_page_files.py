"""Which page build is served (`static_dir`, the packaged copy, a checkout's static/dist) and its caching."""
from __future__ import annotations

import hashlib

import pytest

from chatd.app import start_server
from chatd.errors import ConfigError
from chatd.startup import check_static_dir
from chatd.testing import ChatdTestClient, test_settings
from chatd.web import static


@pytest.fixture
def build(tmp_path):
    """A tiny page build: index.html naming app.js by its content hash, and app.js."""
    root = tmp_path / "page"
    root.mkdir()
    js = b"console.log('custom build');\n"
    digest = hashlib.sha256(js).hexdigest()[:12]
    (root / "app.js").write_bytes(js)
    (root / "app.3f2a9c1b7d4e.css").write_text("body{}")
    (root / "index.html").write_text(f'<!doctype html><title>custom</title><script src="app.js?v={digest}"></script>')
    return root, digest


def test_page_dir_prefers_static_dir_then_the_packaged_page(tmp_path):
    assert static.page_dir(str(tmp_path)) == str(tmp_path)
    # In a checkout there is no packaged copy: static/dist of the checkout is served.
    assert static.packaged_dir() is None
    assert static.page_dir("") in (static.DIST_DIR, None)


@pytest.mark.asyncio
async def test_static_dir_serves_another_build_with_content_addressed_caching(build, tmp_path, chatd_settings):
    root, digest = build
    chatd_settings.static_dir = str(root)
    server = await start_server(chatd_settings)
    client = ChatdTestClient(server)
    try:
        status, body, headers = await client.request("GET", "/")
        assert status == 200 and "custom" in body and headers["Cache-Control"] == "no-cache"
        status, _, headers = await client.request("GET", f"/app.js?v={digest}")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=31536000, immutable"
        # A version that does not match the content, or none: revalidate.
        for path in ("/app.js?v=000000000000", "/app.js"):
            status, _, headers = await client.request("GET", path)
            assert status == 200 and headers["Cache-Control"] == "no-cache", path
        status, _, headers = await client.request("GET", "/app.3f2a9c1b7d4e.css")  # a hash in the name
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Expires" not in headers
    finally:
        client.close()
        await server.stop()


def test_static_dir_without_a_page_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="static_dir .* has no index.html"):
        check_static_dir(test_settings(tmp_path, static_dir=str(tmp_path)))
