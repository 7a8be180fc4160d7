"""Fixtures for the browser tests: a real chatd process, Debian's Chromium driven by Playwright.

The server runs as a subprocess (`python -m chatd serve`, `chatd.testing.ServerProcess`) on a free
127.0.0.1 port with its own data directory, so a test can stop it (SIGTERM or SIGKILL) and start it
again on the same port and data. Chromium is `/usr/bin/chromium` (scripts/setup_browser.sh);
Playwright never downloads a browser. Screenshots go to tests/browser/artifacts/ (git-ignored).
The page object and the network helpers are in helpers.py.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chatd.testing import ServerProcess

from .helpers import CanaryServer, DroppingProxy, PrefixProxy, Tab

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHATD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chatd_server(workdir: Path, env: dict[str, str]) -> ServerProcess:
    """A (not yet started) server with its data in WORKDIR/data and its output in WORKDIR/chatd.log."""
    return ServerProcess(workdir / "data", env, log_path=workdir / "chatd.log")


# ------------------------------------------------------------------ the server process


@pytest.fixture
def chatd_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start a chatd subprocess with extra CHATD_* environment; stopped after the test."""
    started: list[ServerProcess] = []

    def make(**env: Any) -> ServerProcess:
        server = chatd_server(tmp_path / f"chatd{len(started)}", {k: str(v) for k, v in env.items()})
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL if server.running else signal.SIGTERM)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that do not restart it (a quick demo assistant)."""
    server = chatd_server(tmp_path_factory.mktemp("chatd-shared"), {
        "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "40",
        "CHATD_RATE_MESSAGES": "200",
    })
    server.start()
    yield server
    server.stop(signal.SIGTERM)


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module (module scope: no sync Playwright alive while asyncio tests run)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/setup_browser.sh")
    if not (REPO / "static" / "dist" / "index.html").exists():
        pytest.fail("static/dist is not built: run scripts/setup_frontend.sh (make frontend)")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Factory: a page in a fresh browser context (its own sessionStorage) or in a given one."""
    contexts: list[Any] = []

    def make(base_url: str, context: Any = None, **context_args: Any) -> Tab:
        if context is None:
            context_args.setdefault("viewport", {"width": 1280, "height": 800})
            context = browser.new_context(**context_args)
            contexts.append(context)
        return Tab(context.new_page(), base_url)

    yield make
    for ctx in contexts:
        ctx.close()


# ------------------------------------------------------------------ the network tests


@pytest.fixture
def canary() -> Iterator[CanaryServer]:
    server = CanaryServer()
    yield server
    server.close()


P = TypeVar("P", bound=DroppingProxy)


def _proxies(cls: type[P]) -> Iterator[Callable[[int], P]]:
    """Yield a factory of proxies in front of a chatd port, then close every one it made."""
    made: list[P] = []

    def make(port: int) -> P:
        proxy = cls(port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def prefix_proxy() -> Iterator[Callable[[int], PrefixProxy]]:
    """Factory: a proxy serving chatd (on the given port) under `/chat/`."""
    yield from _proxies(PrefixProxy)


@pytest.fixture
def dropping_proxy() -> Iterator[Callable[[int], DroppingProxy]]:
    """Factory: a proxy in front of chatd (on the given port) that can cut the network."""
    yield from _proxies(DroppingProxy)
