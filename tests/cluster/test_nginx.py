"""Three chatd processes behind Debian's nginx (conf/nginx.conf, plain round-robin), one PostgreSQL store.

Through nginx: clients on different processes see each other's messages and the same chunks; a
stop on one process cancels a reply running on another; the message rate and the concurrent-reply
cap count across all three; the client's own address is seen behind the trusted proxy only.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from chatd.testing import ahttp

from .cluster import MAX_CONCURRENT_REPLIES, RATE_MESSAGES
from .helpers import connect_through_nginx, gauges, request_from, sockets_on_distinct_processes
from .helpers import user_with_conversation as _user

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.usefixtures("ws_clients"), pytest.mark.asyncio]

LONG = " ".join(f"w{i:03d}" for i in range(600))  # 2,399 characters: 600 tokens, about 3 s at 200 tokens/s


async def _reply_frames(ws, timeout=20.0) -> list[dict]:
    return await ws.collect_until("message_added", timeout=timeout)


async def test_clients_on_different_processes_see_each_others_messages_and_the_same_chunks(cluster):
    _, token, conv = await _user(cluster, "fanout")
    (a, port_a), (b, port_b) = await sockets_on_distinct_processes(cluster, token, 2)
    assert port_a != port_b
    await a.join(conv["id"])
    await b.join(conv["id"])
    await a.send({"type": "send_message", "ref": "1", "data": {
        "conversation_id": conv["id"], "content": "/echo " + LONG[:400], "message_type": "user"}})
    frames_a, frames_b = await asyncio.gather(_reply_frames(a), _reply_frames(b))
    for frames in (frames_a, frames_b):
        assert [f["data"]["message"]["content"] for f in frames if f["type"] == "message_received"] == \
            ["/echo " + LONG[:400]]
    chunks_a = [(f["data"]["index"], f["data"]["content"]) for f in frames_a if f["type"] == "stream_content"]
    chunks_b = [(f["data"]["index"], f["data"]["content"]) for f in frames_b if f["type"] == "stream_content"]
    assert chunks_a == chunks_b and [i for i, _ in chunks_a] == list(range(len(chunks_a)))
    assert "".join(c for _, c in chunks_b) == frames_b[-1]["data"]["message"]["content"] == LONG[:400]


async def test_stop_on_one_process_cancels_a_reply_running_on_another(cluster):
    _, token, conv = await _user(cluster, "stopper")
    (a, port_a), (b, port_b) = await sockets_on_distinct_processes(cluster, token, 2)
    await a.join(conv["id"])
    await b.join(conv["id"])
    await a.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "/echo " + LONG,
                                                    "message_type": "user"}})
    start = await b.expect("stream_start", timeout=10)
    await b.expect("stream_content", timeout=10)
    active = await gauges(cluster, "chatd_replies_active")
    assert active[port_a] >= 1 and active[port_b] == 0  # the reply runs where it was asked for
    await b.send({"type": "stop_generation", "data": {"message_id": start["data"]["message_id"]}})
    frames = await _reply_frames(b, timeout=10)
    error = next(f for f in frames if f["type"] == "stream_error")["data"]
    added = frames[-1]["data"]["message"]
    assert error["code"] == "CANCELLED" and added["status"] == "cancelled"
    assert 0 < len(added["content"]) < len(LONG)
    assert (await _reply_frames(a, timeout=10))[-1]["data"]["message"] == added


async def test_message_rate_and_reply_cap_count_across_all_three(cluster):
    _, token, conv = await _user(cluster, "limited")
    sockets = await sockets_on_distinct_processes(cluster, token, 3)
    for ws, _ in sockets:
        await ws.join(conv["id"])
    # The reply cap: two long replies started on two processes; a third send, on the third, is refused.
    for ws, _ in sockets[:MAX_CONCURRENT_REPLIES]:
        await ws.send({"type": "send_message", "ref": "long", "data": {
            "conversation_id": conv["id"], "content": "/echo " + LONG, "message_type": "user"}})
        await ws.expect("ack", timeout=10)
    third = sockets[MAX_CONCURRENT_REPLIES][0]
    await third.send({"type": "send_message", "ref": "over", "data": {
        "conversation_id": conv["id"], "content": "/echo too many", "message_type": "user"}})
    refused = await third.expect("error", timeout=10)
    assert refused["data"]["code"] == "RATE_LIMITED" and refused["data"]["ref"] == "over"
    actives = [f for f in third.frames if f["type"] == "stream_start"]
    for f in actives:
        await third.send({"type": "stop_generation", "data": {"message_id": f["data"]["message_id"]}})
    for _ in range(len(actives)):
        await third.expect("message_added", timeout=10, where=lambda f: f["data"]["message"]["status"] == "cancelled")
    # The message rate: RATE_MESSAGES per window over the three processes together.
    sent = MAX_CONCURRENT_REPLIES  # the long ones counted
    i = 0
    # The stopped replies' slots are released just after their message_added: wait until a reply
    # is accepted again (a send refused for the reply cap creates nothing and counts nothing).
    for _ in range(50):
        await sockets[0][0].send({"type": "send_message", "ref": "probe", "data": {
            "conversation_id": conv["id"], "content": "/echo ok", "message_type": "user"}})
        answer = await sockets[0][0].expect("ack", timeout=10, where=lambda f: f["data"].get("ref") == "probe") \
            if not await _refused(sockets[0][0], "probe") else None
        if answer is not None:
            await sockets[0][0].expect("message_added", timeout=10,
                                       where=lambda f: f["data"]["message"]["content"] == "ok")
            sent += 1
            break
        await asyncio.sleep(0.1)
    while sent < RATE_MESSAGES:
        ws = sockets[i % 3][0]
        await ws.send({"type": "send_message", "ref": f"r{i}", "data": {
            "conversation_id": conv["id"], "content": "/echo ok", "message_type": "user"}})
        await ws.expect("ack", timeout=10, where=lambda f, i=i: f["data"].get("ref") == f"r{i}")
        await ws.expect("message_added", timeout=10, where=lambda f: f["data"]["message"]["content"] == "ok")
        sent += 1
        i += 1
    over = sockets[i % 3][0]
    await over.send({"type": "send_message", "ref": "last", "data": {
        "conversation_id": conv["id"], "content": "/echo one too many", "message_type": "user"}})
    error = await over.expect("error", timeout=10)
    assert error["data"]["code"] == "RATE_LIMITED" and error["data"]["retry_after"] > 0


async def _refused(ws, ref: str) -> bool:
    """Whether the answer to `ref` is an error (True) or an ack (False); other frames stay unread."""
    seen = []
    while True:
        frame = await ws.recv(timeout=10)
        assert frame is not None, "socket closed"
        if frame["type"] in ("ack", "error") and (frame.get("data") or {}).get("ref") == ref:
            if frame["type"] == "ack":
                seen.append(frame)
            ws._unread[:0] = seen
            return frame["type"] == "error"
        seen.append(frame)


def _login(source: str, port: int, username: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    status, _ = request_from(source, port, "POST", "/api/v1/auth/login",
                             {"username": username, "password": "wrong password"}, headers)
    return status


async def test_the_client_address_is_the_forwarded_one_only_behind_the_trusted_proxy(cluster):
    attempts = 4  # CHATD_RATE_AUTH_ATTEMPTS of the cluster
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    nginx = cluster.nginx.port
    direct = cluster.servers[0].port
    # Through nginx (trusted), each client has its own sign-in budget, told apart by the address
    # nginx forwards: 127.0.0.2 uses its budget up; 127.0.0.3 is untouched by that.
    statuses = [await asyncio.to_thread(_login, "127.0.0.2", nginx, name) for _ in range(attempts + 1)]
    assert statuses == [401] * attempts + [429]
    assert await asyncio.to_thread(_login, "127.0.0.3", nginx, name) == 401
    # A client's own X-Forwarded-For passes through nginx but is not believed: nginx appends the
    # real address, and that is the one read (right to left, skipping trusted proxies).
    assert await asyncio.to_thread(_login, "127.0.0.2", nginx, name, "10.9.9.9") == 429
    # Straight to a process from an untrusted peer, X-Forwarded-For is ignored altogether.
    statuses = [await asyncio.to_thread(_login, "127.0.0.4", direct, name, f"10.0.0.{i}") for i in range(attempts + 1)]
    assert statuses == [401] * attempts + [429]
    # And 10.0.0.1 .. 10.0.0.4 were never charged: via nginx with no header, 127.0.0.5 is fresh.
    assert await asyncio.to_thread(_login, "127.0.0.5", nginx, name) == 401


async def test_a_redis_restarted_empty_mid_reply_still_refuses_a_duplicate_reply(cluster):
    # Last in the module: it empties the cluster's Redis.
    import redis

    _, token, conv = await _user(cluster, "flushed")
    (a, _), (b, _) = await sockets_on_distinct_processes(cluster, token, 2)
    await a.join(conv["id"])
    await b.join(conv["id"])
    await a.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "/echo " + LONG,
                                                    "message_type": "user"}})
    start = await b.expect("stream_start", timeout=10)
    await b.expect("stream_content", timeout=10)
    def flush() -> None:  # as a Redis that restarted without persistence
        with redis.Redis.from_url(cluster.redis_url) as client:
            client.flushall()

    await asyncio.to_thread(flush)
    await asyncio.sleep(1.5)  # more than one lease refresh (owner_lease_s / 3 = 0.67 s)
    await b.send({"type": "stream_response", "ref": "again", "data": {
        "conversation_id": conv["id"], "message_id": start["data"]["reply_to"], "assistant_id": "demo"}})
    refused = await b.expect("error", timeout=10, where=lambda f: f["data"].get("ref") == "again")
    assert refused["data"]["code"] == "CONFLICT"
    frames = await _reply_frames(b, timeout=20)
    added = frames[-1]["data"]["message"]
    assert added["status"] == "complete" and added["content"] == LONG
    assert [f for f in frames if f["type"] == "stream_start"] == []  # no second reply began


async def test_kill_9_of_a_process_mid_reply_is_stored_interrupted_within_two_leases(cluster):
    # Last in the module: it kills one of the three processes.
    _, token, conv = await _user(cluster, "killed")
    (a, port_a), (b, port_b) = await sockets_on_distinct_processes(cluster, token, 2)
    await a.join(conv["id"])
    await b.join(conv["id"])
    await a.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "/echo " + LONG,
                                                    "message_type": "user"}})
    mid = (await b.expect("stream_start", timeout=10))["data"]["message_id"]
    await b.expect("stream_content", timeout=10)
    await asyncio.sleep(1.2)  # past a checkpoint (checkpoint_interval_s = 1)
    loop = asyncio.get_running_loop()
    cluster.server_on(port_a).kill9()
    killed = loop.time()
    added = await b.expect("message_added", timeout=15, where=lambda f: f["data"]["message"]["id"] == mid)
    took = loop.time() - killed
    message = added["data"]["message"]
    assert message["status"] == "interrupted" and message["content"] and LONG.startswith(message["content"])
    lease_s = float(cluster.servers[0].env["CHATD_OWNER_LEASE_S"])
    assert took <= 2 * lease_s, f"stored interrupted {took:.2f} s after kill -9; lease {lease_s} s"
    print(f"\nkill -9 mid-reply: stored interrupted by a survivor {took:.2f} s later (lease {lease_s} s)")
    # The survivors serve on through nginx, and the dead reply is not shown as active.
    status, body = await ahttp("GET", f"{cluster.server_on(port_b).base}/readyz")
    assert status == 200, body
    for _ in range(3):  # whichever survivor nginx picks
        c, port = await connect_through_nginx(cluster, token)
        assert port != port_a
        joined = await c.join(conv["id"])
        assert joined["data"]["active_streams"] == []
