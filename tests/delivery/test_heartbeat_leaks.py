"""Issue 3 item 7: protocol pings drop a dead peer; app-level ping/pong; after 100 abrupt
disconnects (mid-auth, mid-join, mid-reply, while typing) every count returns to baseline."""
from __future__ import annotations

import asyncio
import time

import pytest

from chatd.testing import RawWS, test_settings


@pytest.fixture
def chatd_settings(tmp_path):
    return test_settings(tmp_path, heartbeat_interval_s=0.3, heartbeat_timeout_s=0.3, rate_messages=100_000,
                         max_concurrent_replies=1000, max_frames_per_second=1000,
                         providers={"demo": {"tokens_per_second": 200}})


def _counts(server) -> dict:
    return {"connections": server.connections.connection_count, "channels": server.connections.channel_count(),
            "subscribers": server.bus.subscriber_count(), "sockets": len(server.app.settings["sockets"]),
            "tasks": len(asyncio.all_tasks()), "replies": server.replies.active_count}


async def _settle(server, baseline: dict, timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        now = _counts(server)
        if now == baseline or loop.time() > end:
            return now
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_app_level_ping_pong(chatd):
    _, token = await chatd.register()
    ws = await chatd.ws(token)
    await ws.send({"type": "ping", "data": {"t": 123, "nested": {"a": [1, 2]}}})
    assert (await ws.expect("pong"))["data"] == {"t": 123, "nested": {"a": [1, 2]}}
    await ws.send({"type": "ping", "data": {}})
    assert (await ws.expect("pong"))["data"] == {}


@pytest.mark.slow
@pytest.mark.asyncio
async def test_protocol_pings_drop_a_dead_peer_and_keep_a_live_one(chatd):
    server = chatd.server
    _, token = await chatd.register()
    conv = await chatd.conversation(token)
    live = await chatd.ws(token)  # tornado's client answers pings
    await live.join(conv["id"])
    baseline = _counts(server)

    def dead_peer() -> RawWS:
        raw = RawWS(chatd.server.port)
        raw.auth(token)
        raw.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}})
        raw.recv_json("joined")
        return raw  # never reads again: pings go unanswered

    raw = await asyncio.to_thread(dead_peer)
    try:
        t0 = time.monotonic()
        await asyncio.sleep(0.1)
        assert server.connections.connection_count == baseline["connections"] + 1
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while server.connections.connection_count > baseline["connections"] and loop.time() < end:
            await asyncio.sleep(0.05)
        dropped = time.monotonic() - t0
        print(f"\nheartbeat 0.3 s/0.3 s: dead peer dropped after {dropped:.2f} s")
        assert server.connections.connection_count == baseline["connections"]
        assert await _settle(server, baseline, 5) == baseline
        # The live client stayed through many ping rounds.
        await live.send({"type": "ping", "data": {"still": "here"}})
        assert (await live.expect("pong"))["data"] == {"still": "here"}
    finally:
        raw.close()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_counts_return_to_baseline_after_100_abrupt_disconnects(chatd):
    server = chatd.server
    owner, owner_token = await chatd.register()
    other, other_token = await chatd.register()
    conv = await chatd.conversation(owner_token, member_ids=[other["id"]])
    cid = conv["id"]
    observer = await chatd.ws(owner_token)
    await observer.join(cid)

    async def drain() -> None:  # keep reading (an unread tornado client stops answering pings)
        while await observer.recv(timeout=60) is not None:
            pass

    drainer = asyncio.create_task(drain())
    await asyncio.sleep(0.2)
    baseline = _counts(server)
    port = server.port
    modes = ["auth", "mid-auth", "mid-join", "joined", "mid-reply", "typing", "typing-mid-reply"]

    def one(i: int) -> str:
        mode = modes[i % len(modes)]
        raw = RawWS(port)
        if mode == "mid-auth":
            raw.send({"type": "auth", "token": other_token})
            raw.abort()
            return mode
        raw.auth(other_token)
        if mode != "auth":
            raw.send({"type": "join_conversation", "data": {"conversation_id": cid, "since_seq": 0}})
            if mode != "mid-join":
                raw.recv_json("joined")
        if mode in ("mid-reply", "typing-mid-reply"):
            raw.send({"type": "send_message", "data": {"conversation_id": cid, "content": f"/echo {'z' * 400} {i}",
                                                       "message_type": "user"}})
            raw.recv_json("stream_content")
        if mode.startswith("typing"):
            raw.send({"type": "typing_start", "data": {"conversation_id": cid}})
            time.sleep(0.01)
        raw.abort()
        return mode

    done = []
    for i in range(100):
        done.append(await asyncio.to_thread(one, i))
    assert len(done) == 100
    # Replies started by now-gone clients run to their end; afterwards everything is back to baseline.
    after = await _settle(server, baseline, 20)
    print(f"\nleaks: baseline {baseline}, after 100 abrupt disconnects {after}")
    assert after == baseline
    # Typing state: every typing_start of the vanished user was followed by is_typing false.
    await asyncio.sleep(0.3)
    drainer.cancel()
    frames = observer.frames
    typing = [f["data"]["is_typing"] for f in observer.frames
              if f["type"] == "typing_indicator" and f["data"]["user_id"] == other["id"]]
    assert typing.count(True) == sum(1 for m in done if m.startswith("typing"))
    assert typing.count(False) >= typing.count(True) and typing[-1] is False
    # The server still serves: a fresh client joins and chats.
    ws = await chatd.ws(other_token)
    await ws.join(cid)
    assert frames is not None
