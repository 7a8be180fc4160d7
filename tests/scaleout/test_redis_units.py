"""RedisBus, RedisLimiter and RedisInflight against a real Redis."""
from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from chatd.bus.events import Event
from chatd.bus.local import LocalBus
from chatd.bus.redis import RedisBus
from chatd.inflight import InflightReply
from chatd.inflight.redis import RedisInflight
from chatd.limiter.redis import RedisLimiter
from chatd.testing import REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


async def _bus(client, prefix) -> RedisBus:
    bus = RedisBus(client, prefix)
    await bus.start()
    return bus


def ev(**data) -> Event:
    return Event.frame("t", data)


def data_of(events: list[Event]) -> list[dict]:
    return [json.loads(e.payload)["data"] for e in events]


async def _wait_for(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


# --- Bus ------------------------------------------------------------------------------------------

async def test_bus_orders_each_publisher_and_fans_out_across_processes(redis_client, redis_prefix):
    other = aioredis.Redis.from_url(REDIS_URL)  # a second "process": its own client and PubSub
    a, b = await _bus(redis_client, redis_prefix), await _bus(other, redis_prefix)
    try:
        got_a, got_b = [], []
        await a.subscribe("conv:1", got_a.append)
        await b.subscribe("conv:1", got_b.append)
        for i in range(300):
            await (a if i % 2 else b).publish("conv:1", ev(n=i, who="a" if i % 2 else "b"))
        await _wait_for(lambda: len(got_a) == 300 and len(got_b) == 300)
        for got in (got_a, got_b):
            for who in "ab":
                ns = [e["n"] for e in data_of(got) if e["who"] == who]
                assert ns == sorted(ns)
        assert data_of(got_a) == data_of(got_b)  # one publisher at a time here: the same global order too
    finally:
        await a.close()
        await b.close()
        await other.aclose()


async def test_bus_subscribe_is_live_when_it_returns_and_prefix_isolates(redis_client, redis_prefix):
    bus = await _bus(redis_client, redis_prefix)
    stranger = await _bus(redis_client, redis_prefix + "other:")
    try:
        got, strange = [], []
        await stranger.subscribe("conv:9", strange.append)
        await bus.subscribe("conv:9", got.append)
        # Published by raw Redis right after subscribe returned: must arrive.
        await redis_client.publish(redis_prefix + "conv:9", ev(x=1).to_wire())
        await _wait_for(lambda: data_of(got) == [{"x": 1}])
        await asyncio.sleep(0.1)
        assert strange == []
        # Unsubscribe then subscribe again at once: still live when it returns.
        handler = got.append
        await bus.unsubscribe("conv:9", handler)
        await bus.subscribe("conv:9", handler)
        await redis_client.publish(redis_prefix + "conv:9", ev(x=2).to_wire())
        await _wait_for(lambda: data_of(got) == [{"x": 1}, {"x": 2}])
        await bus.unsubscribe("conv:9", handler)
        assert bus.subscriber_count() == 0
        assert await bus.ping()
    finally:
        await bus.close()
        await stranger.close()


async def test_bus_reconnects_and_resubscribes_after_connection_loss(redis_client, redis_prefix):
    bus = await _bus(redis_client, redis_prefix)
    try:
        got = []
        await bus.subscribe("conv:3", got.append)
        # Kill the PubSub connection server-side (what a Redis restart does to every client).
        clients = await redis_client.client_list(_type="pubsub")
        assert clients
        for c in clients:
            await redis_client.client_kill_filter(_id=c["id"])
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        n = 0
        while not got:  # publish until the reconnected subscriber hears one
            assert loop.time() < end, "bus did not re-subscribe"
            await bus.publish("conv:3", ev(n=n))
            n += 1
            await asyncio.sleep(0.05)
        assert await bus.ping()
    finally:
        await bus.close()


# --- Limiter --------------------------------------------------------------------------------------

async def test_limiter_sliding_window_is_shared_and_exact(redis_client, redis_prefix):
    a = RedisLimiter(redis_client, redis_prefix)
    b = RedisLimiter(redis_client, redis_prefix)
    results = [await (a if i % 2 else b).hit("msg:u1", 5, 0.5) for i in range(7)]
    assert results[:5] == [None] * 5
    assert all(r is not None and 0 < r <= 0.5 for r in results[5:])
    assert await a.hit("msg:u2", 5, 0.5) is None  # another key
    await asyncio.sleep(results[5] + 0.05)
    assert await b.hit("msg:u1", 5, 0.5) is None  # the oldest hit left the window


async def test_limiter_slots_cap_release_and_ttl(redis_client, redis_prefix):
    a = RedisLimiter(redis_client, redis_prefix, slot_ttl_s=0.6)
    b = RedisLimiter(redis_client, redis_prefix, slot_ttl_s=0.6)
    await a.start()  # a refreshes its leases; b "crashes" (never refreshes)
    try:
        assert await a.acquire("replies:u", 3)
        assert await b.acquire("replies:u", 3)
        assert await b.acquire("replies:u", 3)
        assert not await a.acquire("replies:u", 3)
        await b.release("replies:u")
        assert await a.acquire("replies:u", 3)
        assert not await b.acquire("replies:u", 3)
        await asyncio.sleep(1.0)  # b's remaining slot lease lapsed; a's two were refreshed
        assert await b.acquire("replies:u", 3)
        assert not await b.acquire("replies:u", 3)
        await a.release("replies:u")
        await a.release("replies:u")
        await a.release("replies:u")  # more releases than held: harmless
        assert await a.acquire("replies:u", 3)
    finally:
        await a.close()


# --- In-flight registry ---------------------------------------------------------------------------

async def test_inflight_claim_conflict_snapshot_and_release(redis_client, redis_prefix):
    bus = await _bus(redis_client, redis_prefix)
    a = RedisInflight(redis_client, bus, redis_prefix, lease_s=2)
    b = RedisInflight(redis_client, bus, redis_prefix, lease_s=2)
    await a.start("host:1:aaaa")
    await b.start("host:2:bbbb")
    try:
        assert await a.claim(7, 100)
        assert not await b.claim(7, 100)  # CONFLICT across processes
        await a.unclaim(7, 100)
        assert await b.claim(7, 100)
        r = InflightReply(message_id=101, conversation_id=7, reply_to=100, owner="host:2:bbbb")
        await b.add(r)
        assert not await a.claim(7, 100)
        r.text, r.index = "hello", 0
        await b.publish_chunk(r, "hello", ev(i=0))
        snap = await a.active(7)
        assert [(x.message_id, x.text, x.index, x.owner, x.reply_to) for x in snap] == [
            (101, "hello", 0, "host:2:bbbb", 100)]
        got = await a.get(101)
        assert got is not None and got.text == "hello" and got.conversation_id == 7
        assert await a.active(8) == []
        await b.release(r)
        assert await a.active(7) == [] and await a.get(101) is None
        assert await a.claim(7, 100)
    finally:
        await a.close()
        await b.close()
        await bus.close()


async def test_a_chunk_appends_its_text_and_is_published_in_one_script(redis_client, redis_prefix):
    bus = await _bus(redis_client, redis_prefix)
    reg = RedisInflight(redis_client, bus, redis_prefix, lease_s=2)
    await reg.start("host:1:aaaa")
    got: list[Event] = []
    await bus.subscribe("conv:5", got.append)
    try:
        assert await reg.claim(5, 50)
        r = InflightReply(message_id=51, conversation_id=5, reply_to=50, owner="host:1:aaaa")
        await reg.add(r)
        text = ""
        for i, delta in enumerate(["Grüße ", "an ", "alle — ", "🙂!"]):  # multi-byte text: lengths in bytes
            r.text, r.index = r.text + delta, i
            text += delta
            await reg.publish_chunk(r, delta, ev(i=i))
        await _wait_for(lambda: len(got) == 4)
        assert [e["i"] for e in data_of(got)] == [0, 1, 2, 3]
        assert [(x.text, x.index) for x in await reg.active(5)] == [(text, 3)]
        # Redis loses the text (a restart while the reply runs): the next chunk sends it whole.
        await redis_client.delete(redis_prefix + "inflight:51:text")
        r.text, r.index = r.text + " bye", 4
        await reg.publish_chunk(r, " bye", ev(i=4))
        await _wait_for(lambda: len(got) == 5)
        assert [(x.text, x.index) for x in await reg.active(5)] == [(text + " bye", 4)]
        # Only deltas travel: the text key grew by APPEND, never rewritten per chunk.
        assert await redis_client.strlen(redis_prefix + "inflight:51:text") == len((text + " bye").encode())
    finally:
        await reg.close()
        await bus.close()


async def test_inflight_leases_expire_when_the_owner_stops_refreshing(redis_client, redis_prefix):
    bus = LocalBus()
    live = RedisInflight(redis_client, bus, redis_prefix, lease_s=0.6)
    dead = RedisInflight(redis_client, bus, redis_prefix, lease_s=0.6)
    await live.start("host:1:live")
    await dead.start("host:2:dead")
    dead._task.cancel()  # a crash: no more refreshing
    try:
        assert await live.claim(1, 10) and await dead.claim(1, 20)
        ra = InflightReply(message_id=11, conversation_id=1, reply_to=10, owner="host:1:live")
        rb = InflightReply(message_id=21, conversation_id=1, reply_to=20, owner="host:2:dead")
        await live.add(ra)
        await dead.add(rb)
        assert {x.message_id for x in await live.active(1)} == {11, 21}
        await asyncio.sleep(1.2)
        assert [x.message_id for x in await live.active(1)] == [11]
        assert await live.owner_alive("host:1:live") is True
        assert await live.owner_alive("host:2:dead") is False
        assert await live.claim(1, 20)  # the dead owner's claim lapsed
        assert not await dead.claim(1, 10)  # the live owner's was refreshed
        assert await live.claim_sweep(21) and not await dead.claim_sweep(21)
    finally:
        await live.close()
        await dead.close()
