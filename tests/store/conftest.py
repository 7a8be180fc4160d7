"""Fixtures of the store contract suite: `store_url` (a fresh database of each back-end) and `store`."""
from __future__ import annotations

import pytest
import pytest_asyncio

from chatd.store.urls import store_from_url

from .backends import BACKENDS


@pytest_asyncio.fixture(params=sorted(BACKENDS))
async def store_url(request, tmp_path):
    """The URL of a fresh, empty database of one back-end."""
    async with BACKENDS[request.param](tmp_path) as url:
        yield url


@pytest_asyncio.fixture
async def store(store_url):
    """An opened store on that database."""
    s = store_from_url(store_url, pool_size=8)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def backend(store_url) -> str:
    """Which back-end this test runs on."""
    return store_url.split(":", 1)[0]
