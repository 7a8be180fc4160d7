"""A Redis restart (empty, on its own port) under two chatd processes: replies survive, fan-out resumes."""
from __future__ import annotations

import asyncio
import shutil

import pytest

from chatd.testing import ServerProcess, aclose_ws_clients, ahttp, free_port, register, start_redis_server, ws_connect  # noqa: F401

from .test_two_processes import TEXT, Cluster, _assemble, _env, _join, _send, _stored

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.usefixtures("ws_clients"),
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")]


@pytest.mark.asyncio
async def test_reply_survives_a_redis_restart_and_fanout_resumes(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis_server(port)
    env = _env("chatdtest:", 12.0, CHATD_REDIS_URL=url)
    a = ServerProcess(tmp_path / "data", env)
    b = ServerProcess(tmp_path / "data", env)
    try:
        await asyncio.to_thread(a.start)
        await asyncio.to_thread(b.start)
        c = Cluster(a, b, "chatdtest:")
        _, token = await register(a.base, "alice")
        _, body = await ahttp("POST", f"{a.base}/api/v1/conversations", token, {"title": "t"})
        cid = body["conversation"]["id"]
        wb, _ = await _join(b, token, cid)
        wa, _ = await _join(a, token, cid)
        await wa.send(_send(cid, "/echo " + TEXT))
        mid = (await wb.expect("stream_start", timeout=10))["data"]["message_id"]
        await asyncio.sleep(0.5)
        redis.terminate()
        redis.wait(10)
        await asyncio.sleep(1.0)
        redis = start_redis_server(port)  # empty: every key, lease and subscription is gone
        # The reply on A is neither failed by the outage nor taken for an orphan by B's sweep.
        added = await wa.expect("message_added", timeout=30, where=lambda f: f["data"]["message"]["id"] == mid)
        assert added["data"]["message"]["status"] == "complete"
        stored = await _stored(c, token, cid, mid)
        assert stored["status"] == "complete" and stored["content"] == TEXT
        # Fan-out A → B works again, and a reply streams to B whole.
        await wa.send(_send(cid, "/echo again"))
        got = await wb.expect("message_received", timeout=10,
                              where=lambda f: f["data"]["message"]["content"] == "/echo again")
        mid2 = (await wb.expect("stream_start", timeout=10))["data"]["message_id"]
        text, message = await _assemble(wb, mid2, "", -1)
        assert text == "again" and message["status"] == "complete"
        assert got["data"]["seq"] == stored["seq"] + 1
        status, _ = await ahttp("GET", f"{b.base}/readyz")
        assert status == 200
    finally:
        await aclose_ws_clients()
        a.stop()
        b.stop()
        redis.kill()
        redis.wait(10)
