"""Fixtures of the provider tests: a fake OpenAI + Anthropic server (see llm_fakes.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
import tornado.httpserver
import tornado.netutil
import tornado.web
from llm_fakes import AnthropicHandler, FakeLLM, OpenAIHandler


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A running fake OpenAI + Anthropic server on a free 127.0.0.1 port."""
    fake = FakeLLM()
    app = tornado.web.Application([
        (r"/v1/chat/completions", OpenAIHandler, {"fake": fake}),
        (r"/v1/messages", AnthropicHandler, {"fake": fake}),
    ])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    fake.port = sockets[0].getsockname()[1]
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    fake.server = server
    try:
        yield fake
    finally:
        server.stop()
        await server.close_all_connections()
