"""Two real `chatd serve` processes sharing one SQLite file and one Redis (bus, limiter, in-flight)."""
from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from chatd.testing import REDIS_URL, ServerProcess, aclose_ws_clients, ahttp, delete_prefix, register, ws_connect

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.usefixtures("ws_clients")]

TEXT = " ".join(f"w{i:03d}" for i in range(60))  # 299 characters


class Cluster:
    def __init__(self, a: ServerProcess, b: ServerProcess, prefix: str) -> None:
        self.a, self.b, self.prefix = a, b, prefix


def _env(prefix: str, tps: float, **extra: str) -> dict[str, str]:
    env = {"CHATD_BUS": "redis", "CHATD_LIMITER": "redis", "CHATD_INFLIGHT": "redis",
           "CHATD_REDIS_URL": REDIS_URL, "CHATD_REDIS_PREFIX": prefix,
           "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": str(tps),
           "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "4", "CHATD_LOG_LEVEL": "WARNING", "CHATD_OWNER_LEASE_S": "2"}
    env.update(extra)
    return env


@pytest_asyncio.fixture
async def cluster(tmp_path, request):
    """Processes A and B; parametrize indirectly with (tokens_per_second, extra env)."""
    tps, extra = getattr(request, "param", (40.0, {}))
    prefix = f"chatdtest:{uuid.uuid4().hex[:10]}:"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {e}")
    data = tmp_path / "data"
    a = ServerProcess(data, _env(prefix, tps, **extra))
    b = ServerProcess(data, _env(prefix, tps, **extra))
    try:
        await asyncio.to_thread(a.start)  # A first: it creates the schema and the JWT secret
        await asyncio.to_thread(b.start)
        yield Cluster(a, b, prefix)
    finally:
        await aclose_ws_clients()
        a.stop()
        b.stop()
        await delete_prefix(client, prefix)
        await client.aclose()


async def _setup(c: Cluster, name: str = "alice"):
    _, token = await register(c.a.base, name)
    status, body = await ahttp("POST", f"{c.a.base}/api/v1/conversations", token, {"title": "t"})
    assert status == 201, body
    return token, body["conversation"]["id"]


async def _join(srv: ServerProcess, token: str, cid, since_seq=None):
    ws = await ws_connect(srv.ws_url, token)
    data = {"conversation_id": cid}
    if since_seq is not None:
        data["since_seq"] = since_seq
    await ws.send({"type": "join_conversation", "data": data})
    frames = await ws.collect_until("joined", timeout=10)
    return ws, frames


async def _stored(c: Cluster, token: str, cid, mid) -> dict:
    status, body = await ahttp("GET", f"{c.b.base}/api/v1/conversations/{cid}/messages", token)
    assert status == 200, body
    return next(m for m in body["messages"] if m["id"] == mid)


def _send(cid, content: str, ref: str | None = None) -> dict:
    frame = {"type": "send_message", "data": {"conversation_id": cid, "content": content, "message_type": "user"}}
    if ref:
        frame["ref"] = ref
    return frame


async def _assemble(ws, mid, text: str, index: int, timeout: float = 20) -> tuple[str, dict]:
    """Chunks (contiguous, checked) until the reply's message_added."""
    while True:
        f = await ws.recv(timeout=timeout)
        assert f is not None, "socket closed"
        d = f["data"]
        if f["type"] == "stream_content" and d["message_id"] == mid:
            assert d["index"] == index + 1, (d["index"], index)
            index, text = d["index"], text + d["content"]
        elif f["type"] == "message_added" and d["message"]["id"] == mid:
            return text, d["message"]


@pytest.mark.asyncio
async def test_message_and_reply_on_a_reach_a_client_on_b(cluster):
    token, cid = await _setup(cluster)
    wb, _ = await _join(cluster.b, token, cid)
    wa, _ = await _join(cluster.a, token, cid)
    await wa.send(_send(cid, "/echo " + TEXT))
    got = await wb.expect("message_received", timeout=10)
    assert got["data"]["message"]["content"] == "/echo " + TEXT and got["data"]["seq"] == 1
    start = await wb.expect("stream_start", timeout=10)
    mid = start["data"]["message_id"]
    text, message = await _assemble(wb, mid, "", -1)
    assert text == TEXT == message["content"] and message["status"] == "complete" and message["seq"] == 2
    # Both processes delivered the same thing.
    text_a, _ = await _assemble(wa, mid, "", -1)
    assert text_a == TEXT


@pytest.mark.parametrize("cluster", [(10.0, {})], indirect=True)
@pytest.mark.asyncio
async def test_stop_generation_on_b_cancels_the_reply_running_on_a(cluster):
    token, cid = await _setup(cluster)
    wa, _ = await _join(cluster.a, token, cid)
    wb, _ = await _join(cluster.b, token, cid)
    await wa.send(_send(cid, "/echo " + TEXT))
    mid = (await wb.expect("stream_start", timeout=10))["data"]["message_id"]
    await wb.expect("stream_content", timeout=10)
    await wb.send({"type": "stop_generation", "data": {"message_id": mid}})
    err = await wa.expect("stream_error", timeout=10)
    assert err["data"]["code"] == "CANCELLED" and err["data"]["message_id"] == mid
    added = await wb.expect("message_added", timeout=10)
    assert added["data"]["message"]["status"] == "cancelled"
    stored = await _stored(cluster, token, cid, mid)
    assert stored["status"] == "cancelled" and 0 < len(stored["content"]) < len(TEXT)


@pytest.mark.parametrize("cluster", [(20.0, {})], indirect=True)
@pytest.mark.asyncio
async def test_stream_response_for_the_same_message_on_both_conflicts(cluster):
    token, cid = await _setup(cluster)
    wa, _ = await _join(cluster.a, token, cid)
    wb, _ = await _join(cluster.b, token, cid)
    await wa.send(_send(cid, "/echo short", ref="s"))
    user_mid = (await wa.expect("ack"))["data"]["message_id"]
    await wa.expect("message_added", timeout=10)  # the automatic reply finished: the claim is free
    for round_ in range(3):
        frame = {"type": "stream_response", "data": {"conversation_id": cid, "message_id": user_mid,
                                                      "assistant_id": "demo"}}
        await asyncio.gather(wa.send({**frame, "ref": f"a{round_}"}), wb.send({**frame, "ref": f"b{round_}"}))
        outcomes = []
        for ws, ref in ((wa, f"a{round_}"), (wb, f"b{round_}")):
            outcomes.append(await _outcome(ws, ref))
        assert sorted(outcomes) == ["CONFLICT", "ok"], outcomes
        await wa.expect("message_added", timeout=10)  # let the one reply finish before the next round
        await wb.expect("message_added", timeout=10)


async def _outcome(ws, ref: str) -> str:
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    for f in list(ws._unread):
        if f["data"].get("ref") == ref and f["type"] in ("ack", "error"):
            ws._unread.remove(f)
            return "ok" if f["type"] == "ack" else f["data"]["code"]
    while loop.time() < end:
        f = await ws._read(end - loop.time())
        assert f is not None
        if f["type"] in ("ack", "error") and f["data"].get("ref") == ref:
            return "ok" if f["type"] == "ack" else f["data"]["code"]
        ws._unread.append(f)
    raise AssertionError(f"no answer to {ref}")


@pytest.mark.parametrize("cluster", [(60.0, {})], indirect=True)
@pytest.mark.asyncio
async def test_reconnect_to_the_other_process_mid_reply_loses_nothing_and_repeats_nothing(cluster):
    token, cid = await _setup(cluster)
    rng = random.Random(20261125)
    seq = 0
    for round_ in range(5):
        first, second = (cluster.a, cluster.b) if round_ % 2 == 0 else (cluster.b, cluster.a)
        w1, frames = await _join(first, token, cid, since_seq=seq)
        await w1.send(_send(cid, "/echo " + TEXT))
        user = await w1.expect("message_received", timeout=10)
        seq = user["data"]["seq"]
        mid = (await w1.expect("stream_start", timeout=10))["data"]["message_id"]
        cut = rng.randint(0, 60)
        text, index = "", -1
        while index < cut:  # read up to the cut point
            f = await w1.recv(timeout=10)
            if f["type"] == "stream_content" and f["data"]["message_id"] == mid:
                assert f["data"]["index"] == index + 1
                index, text = f["data"]["index"], text + f["data"]["content"]
            if f["type"] == "message_added":
                break
        w1.conn.close()
        await asyncio.sleep(rng.random() * 0.3)
        w2, frames = await _join(second, token, cid, since_seq=seq)
        joined = frames[-1]["data"]
        replayed = [f for f in frames if f["type"] == "message_added"]
        if replayed:  # it finished while we were away: the replay has it whole
            final = replayed[0]["data"]["message"]["content"]
            assert joined["active_streams"] == []
        else:
            [snap] = joined["active_streams"]
            assert snap["message_id"] == mid and snap["index"] >= index
            assert snap["content"].startswith(text)
            final, message = await _assemble(w2, mid, snap["content"], snap["index"])
            assert message["content"] == final
        assert final == TEXT, (round_, cut)
        stored = await _stored(cluster, token, cid, mid)
        assert stored["content"] == TEXT and stored["status"] == "complete"
        seq = stored["seq"]
        w2.conn.close()


@pytest.mark.parametrize("cluster", [(400.0, {"CHATD_RATE_MESSAGES": "6", "CHATD_RATE_WINDOW_S": "30",
                                              "CHATD_MAX_CONCURRENT_REPLIES": "50"})], indirect=True)
@pytest.mark.asyncio
async def test_message_rate_limit_is_shared_by_the_processes(cluster):
    token, cid = await _setup(cluster)
    wa = await ws_connect(cluster.a.ws_url, token)
    wb = await ws_connect(cluster.b.ws_url, token)
    answers = []
    for i in range(8):
        ws = wa if i % 2 == 0 else wb
        await ws.send(_send(cid, f"hello {i}", ref=f"r{i}"))
        answers.append(await _outcome(ws, f"r{i}"))
    assert answers == ["ok"] * 6 + ["RATE_LIMITED"] * 2


@pytest.mark.parametrize("cluster", [(15.0, {})], indirect=True)
@pytest.mark.asyncio
async def test_kill_9_of_a_mid_reply_is_marked_interrupted_by_b(cluster):
    token, cid = await _setup(cluster)
    wb, _ = await _join(cluster.b, token, cid)
    wa, _ = await _join(cluster.a, token, cid)
    await wa.send(_send(cid, "/echo " + TEXT))
    mid = (await wb.expect("stream_start", timeout=10))["data"]["message_id"]
    await asyncio.sleep(1.5)  # past one checkpoint
    cluster.a.kill9()
    loop = asyncio.get_running_loop()
    killed = loop.time()
    added = await wb.expect("message_added", timeout=15, where=lambda f: f["data"]["message"]["id"] == mid)
    took = loop.time() - killed
    message = added["data"]["message"]
    assert message["status"] == "interrupted" and message["content"] and TEXT.startswith(message["content"])
    assert took < 8, took
    print(f"\ninterrupted {took:.2f}s after kill -9")
    status, body = await ahttp("GET", f"{cluster.b.base}/readyz")
    assert status == 200, body
    # B serves on, and its joiners no longer see the dead reply as active.
    w2, frames = await _join(cluster.b, token, cid)
    assert frames[-1]["data"]["active_streams"] == []
