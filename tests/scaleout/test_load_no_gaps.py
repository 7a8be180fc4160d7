"""Under load, across processes, no chunk is ever lost: 150 replies on A watched from B.

Every reply is generated on process A and watched by a socket on process B (Redis bus and
in-flight state), every delta its own chunk. While they stream, Redis stalls for six seconds
(`CLIENT PAUSE`, as a Redis does during a failover, a slow fsync or a big key's deletion), and
each process may open only 40 connections to it (`max_connections` in the URL, as a deployment
sharing one Redis limits its clients): every reply then has a chunk waiting on Redis at once,
far more than the connections there are. Each client must still see every `stream_content`
index from 0 without a gap and assemble exactly the text the store holds, and no server may log
a dropped or failed publish: a chunk waits (bounded by `redis_timeout_s`) or fails its reply
visibly, never vanishes.
"""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from chatd.testing import ServerProcess, aclose_ws_clients, ahttp, free_port, register, start_redis_server, ws_connect

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.usefixtures("ws_clients")]

REPLIES = 150
TEXT = " ".join(f"t{i:03d}" for i in range(60))  # 299 characters: 150 deltas of 2 characters each
TOKENS_PER_SECOND = 50  # each reply streams for about 3 s plus the stall: all 150 run at once
STALLS_MS = (6000,)  # longer than redis-py's own retries of a refused command (about 4 s)


def _env(redis_url: str, prefix: str) -> dict[str, str]:
    return {"CHATD_BUS": "redis", "CHATD_LIMITER": "redis", "CHATD_INFLIGHT": "redis",
            # Forty connections per process, as a deployment sharing one Redis would allow.
            "CHATD_REDIS_URL": redis_url + "?max_connections=40", "CHATD_REDIS_PREFIX": prefix,
            "CHATD_LOG_LEVEL": "WARNING",
            "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": str(TOKENS_PER_SECOND),
            "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "2",
            "CHATD_COALESCE_MS": "0",  # every delta its own chunk: the most events the bus can be asked for
            "CHATD_RATE_MESSAGES": "100000", "CHATD_MAX_CONCURRENT_REPLIES": "100000",
            "CHATD_MAX_FRAMES_PER_SECOND": "100000", "CHATD_OWNER_LEASE_S": "20",
            "CHATD_REDIS_TIMEOUT_S": "10"}  # a command may wait (and retry) this long before it fails


async def _watch(ws, cid) -> tuple[list[int], str, dict | None]:
    """Every chunk index and the text of the conversation's reply, until its message_added
    (None when nothing more arrived for 30 s: the end itself was lost)."""
    indexes: list[int] = []
    text = ""
    while True:
        try:
            f = await ws.recv(timeout=30)
        except TimeoutError:
            return indexes, text, None
        assert f is not None, "socket closed"
        d = f["data"]
        if f["type"] == "stream_content":
            indexes.append(d["index"])
            text += d["content"]
        elif f["type"] == "message_added" and d["message"]["conversation_id"] == cid:
            return indexes, text, d["message"]


@pytest.mark.asyncio
async def test_no_chunk_is_lost_across_processes_under_load(tmp_path, redis_prefix):
    # A Redis of its own: CLIENT PAUSE stalls every client of a server, and tests running beside
    # this one (another checkout's suite) must not stall with it.
    port = free_port()
    server = start_redis_server(port)
    url = f"redis://127.0.0.1:{port}/0"
    redis = aioredis.Redis.from_url(url)
    a = ServerProcess(tmp_path / "data", _env(url, redis_prefix))
    b = ServerProcess(tmp_path / "data", _env(url, redis_prefix))
    try:
        await asyncio.to_thread(a.start)  # A first: it creates the schema and the JWT secret
        await asyncio.to_thread(b.start)
        _, token = await register(a.base, "loaded")
        cids = []
        for _ in range(REPLIES):
            status, body = await ahttp("POST", f"{a.base}/api/v1/conversations", token, {"title": "t"})
            assert status == 201, body
            cids.append(body["conversation"]["id"])
        watchers = []
        for cid in cids:  # one socket per conversation, on B
            ws = await ws_connect(b.ws_url, token)
            await ws.send({"type": "join_conversation", "data": {"conversation_id": cid}})
            await ws.expect("joined", timeout=10)
            watchers.append(ws)
        senders = [await ws_connect(a.ws_url, token) for _ in cids]  # one socket each: sent concurrently

        async def send(ws, cid) -> None:
            await ws.send({"type": "send_message", "ref": "go", "data": {
                "conversation_id": cid, "content": "/echo " + TEXT, "message_type": "user"}})
            frames = await ws.collect_until("ack", timeout=30)
            assert [f for f in frames if f["type"] == "error"] == []

        await asyncio.gather(*(send(ws, cid) for ws, cid in zip(senders, cids, strict=True)))
        watching = asyncio.gather(*(_watch(ws, cid) for ws, cid in zip(watchers, cids, strict=True)))
        for stall_ms in STALLS_MS:  # Redis stalls while every reply streams
            await asyncio.sleep(0.4)
            await redis.execute_command("CLIENT", "PAUSE", stall_ms, "ALL")
            await asyncio.sleep(stall_ms / 1000)
        results = await watching
        gaps = [i for i, (indexes, _, _) in enumerate(results) if indexes != list(range(len(indexes)))]
        unended = [i for i, (_, _, message) in enumerate(results) if message is None]
        wrong = [i for i, (_, text, message) in enumerate(results) if message is None or text != message["content"]]
        chunks = sum(len(indexes) for indexes, _, _ in results)
        print(f"\n{REPLIES} replies, {chunks} chunks watched across processes, Redis stalled "
              f"{len(STALLS_MS)}x: {len(gaps)} with index gaps, {len(unended)} whose end never arrived, "
              f"{len(wrong)} with text unlike the stored one")
        assert gaps == [] and unended == [] and wrong == []
        assert all(message is not None and message["status"] == "complete" and message["content"] == TEXT
                   for _, _, message in results)
        for srv in (a, b):
            log = srv.log()
            assert "dropped" not in log and "giving up" not in log, log
    finally:
        await aclose_ws_clients()
        a.stop()
        b.stop()
        await redis.aclose()
        server.terminate()
        server.wait(10)
