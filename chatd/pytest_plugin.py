"""Pytest fixtures shared by chatd's tests and plugin authors: a running server and real clients.

The helpers behind them live in `chatd.testing` (importable without pytest); the ones tests
used to import from here are re-exported. This module is a `pytest11` entry point, so it loads
in every pytest run where chatd is installed: without pytest-asyncio (chatd installed without
its `test` extra) it still loads, and the async fixtures skip the test that asks for them.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

try:
    import pytest_asyncio

    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # chatd installed without its test extra: stay out of the way
    HAVE_PYTEST_ASYNCIO = False

from chatd.config import Settings
from chatd.testing import ChatdTestClient, WSClient, close_ws_clients, serving, test_settings

__all__ = ["ChatdTestClient", "WSClient", "chatd", "chatd_plugins", "chatd_settings", "test_settings", "ws_clients"]


@pytest.fixture
def chatd_settings(tmp_path: Any, request: pytest.FixtureRequest) -> Settings:
    """Settings for the `chatd` fixture: parametrize it indirectly with a dict of overrides."""
    return test_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def chatd_plugins() -> list[Any]:
    """Extra plugin objects to register in the `chatd` fixture's server."""
    return []


NO_ASYNCIO = "chatd's async fixtures need pytest-asyncio: pip install 'chatd[test]' (or pytest-asyncio)"

if HAVE_PYTEST_ASYNCIO:
    @pytest_asyncio.fixture
    async def chatd(chatd_settings: Settings, chatd_plugins: list[Any]) -> AsyncIterator[ChatdTestClient]:
        """A running chatd on a free 127.0.0.1 port, and a client for it."""
        async with serving(chatd_settings, extra_plugins=chatd_plugins) as client:
            yield client

    @pytest_asyncio.fixture
    async def ws_clients() -> AsyncIterator[None]:
        """Close, after the test, the clients `chatd.testing.ws_connect` opened (tornado warns about unclosed ones)."""
        yield
        close_ws_clients()
        await asyncio.sleep(0.01)
else:
    @pytest.fixture(name="chatd")
    def _chatd_needs_asyncio() -> None:
        """Without pytest-asyncio: skip the test that asks for a running chatd."""
        pytest.skip(NO_ASYNCIO)

    @pytest.fixture(name="ws_clients")
    def _ws_clients_need_asyncio() -> None:
        """Without pytest-asyncio: skip the test that asks for it."""
        pytest.skip(NO_ASYNCIO)
