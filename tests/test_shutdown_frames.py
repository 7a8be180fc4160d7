"""Shutdown while frames are being handled: they finish before the store closes, no INTERNAL_ERROR."""
from __future__ import annotations

import asyncio
import logging

import pytest

from chatd.app import start_server
from chatd.pytest_plugin import ChatdTestClient, test_settings


@pytest.mark.asyncio
async def test_stop_waits_for_frames_in_flight(tmp_path, caplog):
    server = await start_server(test_settings(tmp_path, rate_messages=10000, max_frames_per_second=10000))
    client = ChatdTestClient(server)
    _, token = await client.register()
    conv = await client.conversation(token)
    sockets = [await client.ws(token) for _ in range(4)]

    async def hammer(ws):
        # Joins read the store; keep several in flight on every socket until the server closes it.
        try:
            while True:
                await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"], "since_seq": 0}})
                await asyncio.sleep(0)
        except Exception:
            return

    tasks = [asyncio.create_task(hammer(ws)) for ws in sockets]
    await asyncio.sleep(0.3)
    assert server.connections.frames_in_flight >= 0
    with caplog.at_level(logging.ERROR):
        await server.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [f for ws in sockets for f in ws.frames
              if f["type"] == "error" and f["data"]["code"] == "INTERNAL_ERROR"]
    assert errors == []
    assert not [r for r in caplog.records if "frame handling failed" in r.getMessage()]
    assert server.connections.frames_in_flight == 0
    client.close()
