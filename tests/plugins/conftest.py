"""Fixtures of the provider tests: a fake OpenAI + Anthropic server (see llm_fakes.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from llm_fakes import FakeLLM, serve_fake, stop_fake


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A running fake OpenAI + Anthropic server on a free 127.0.0.1 port."""
    fake = FakeLLM()
    server = serve_fake(fake)
    try:
        yield fake
    finally:
        await stop_fake(server)
