"""What only the MongoDB store does: string ids, its indexes, seq holes, a lost server, its settings."""
from __future__ import annotations

import gc
import os
import warnings

import pytest
import pytest_asyncio

from chatd.errors import NotFound, StoreUnavailable
from chatd.store.mongodb import MongoStore, utcnow

from .backends import MONGODB_URL, NxServer, mongodb_database

pytestmark = pytest.mark.asyncio


def collect_cancelled_connects() -> None:
    """Collect sockets pymongo leaves behind when closing the client cancels a connect to a dead server.

    pymongo 4.20's `_async_create_connection` closes its socket on OSError and TimeoutError but
    not on CancelledError; without this, the ResourceWarning surfaces in whichever test happens
    to run the garbage collector next.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest_asyncio.fixture
async def mongo(tmp_path):
    async with mongodb_database(tmp_path) as url:
        store = MongoStore(url, pool_size=3)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def test_ids_are_strings_and_foreign_strings_find_nothing(mongo):
    alice = await mongo.create_user("alice", "h")
    conv = await mongo.create_conversation(alice.id, "t", "demo", [])
    msg = (await mongo.add_message(conv.id, alice.id, "hi", "user")).message
    assert all(isinstance(i, str) and len(i) == 24 for i in (alice.id, conv.id, msg.id))
    # A well-formed id of nothing, another object's id, and junk: found nothing, raised nothing.
    for bad in ("0" * 24, msg.id[::-1], alice.id, "", "{$gt: ''}"):
        assert await mongo.get_conversation(bad) is None
        assert not await mongo.is_member(bad, alice.id)
    assert await mongo.get_message(conv.id) is None
    assert await mongo.list_messages("0" * 24, 10, None, None) == []
    with pytest.raises(NotFound):
        await mongo.add_message("0" * 24, alice.id, "x", "user")
    assert await mongo.db["messages"].count_documents({}) == 1  # the refused message left nothing behind
    with pytest.raises(NotFound):
        await mongo.create_conversation(alice.id, "t", "demo", ["0" * 24])


async def test_the_indexes_are_the_migration(mongo):
    indexes = {ix["name"]: ix async for ix in await mongo.db["messages"].list_indexes()}
    by_keys = {tuple(ix["key"]): ix for ix in indexes.values()}
    assert by_keys[("conversation_id", "seq")].get("unique") is True
    assert by_keys[("conversation_id", "client_msg_id")].get("unique") is True
    if MONGODB_URL:  # nx-27017 accepts partialFilterExpression but does not report (or use) it
        assert by_keys[("conversation_id", "seq")]["partialFilterExpression"] == {"seq": {"$exists": True}}
    assert await mongo.migrations_applied() == [1]


async def test_a_replay_waits_at_a_young_seq_hole_and_skips_an_old_one(mongo):
    alice = await mongo.create_user("alice", "h")
    conv = await mongo.create_conversation(alice.id, "t", "demo", [])
    await mongo.add_message(conv.id, alice.id, "one", "user")
    # A writer took seq 2 and has not set it yet (or died in between).
    await mongo.db["conversations"].update_one({"_id": conv.id}, {"$inc": {"last_seq": 1}})
    three = (await mongo.add_message(conv.id, alice.id, "three", "user")).message
    assert three.seq == 3
    assert [e.seq for e in await mongo.events_since(conv.id, 0)] == [1]  # 3 is not replayed past the hole
    assert [e.seq for e in await mongo.events_since(conv.id, 2)] == [3]
    # Long after: the writer of 2 is gone; the replay goes on past its hole.
    await mongo.db["messages"].update_one({"_id": three.id}, {"$set": {"seq_at": "2000-01-01T00:00:00.000Z"}})
    assert [e.seq for e in await mongo.events_since(conv.id, 0)] == [1, 3]


async def test_a_losing_finisher_returns_the_winner(mongo):
    alice = await mongo.create_user("alice", "h")
    conv = await mongo.create_conversation(alice.id, "t", "demo", [])
    q = (await mongo.add_message(conv.id, alice.id, "q", "user")).message
    reply = await mongo.create_reply(conv.id, q.id, "demo", "me")
    done, changed = await mongo.finish_reply(reply.id, "answer", "complete", None, "stop")
    assert changed is not None and done.seq == 2
    late, unchanged = await mongo.finish_reply(reply.id, "other", "interrupted", None, "cancelled")
    assert unchanged is None and late == done
    assert (await mongo.get_conversation(conv.id)).seq == 2


async def test_pool_size_is_the_setting(mongo):
    assert mongo._client is not None and mongo._client.options.pool_options.max_pool_size == 3


async def test_an_unreachable_server_is_a_clear_error():
    store = MongoStore("mongodb://127.0.0.1:1/none", pool_size=1, server_timeout_s=0.5)
    with pytest.raises(StoreUnavailable, match="not reachable"):
        await store.open()
    collect_cancelled_connects()


@pytest.mark.skipif(bool(MONGODB_URL), reason="stops and restarts its own nx-27017 server")
async def test_a_lost_server_is_store_unavailable_and_the_store_recovers(tmp_path):
    server = NxServer(data_dir=str(tmp_path / "nx"))
    store = MongoStore(f"{server.url}/lost", pool_size=2, server_timeout_s=1.0)
    try:
        await store.open()
        alice = await store.create_user("alice", "h")
        conv = await store.create_conversation(alice.id, "t", "demo", [])
        server.stop(keep_data=True)
        with pytest.raises(StoreUnavailable):
            await store.get_user_by_name("alice")
        with pytest.raises(StoreUnavailable):
            await store.add_message(conv.id, alice.id, "while down", "user", "k1")
        assert not await store.ping()
        server = NxServer(data_dir=server.data_dir, port=server.port)  # the same server back
        assert await store.ping()
        assert (await store.get_user_by_name("alice")).id == alice.id
        sent = await store.add_message(conv.id, alice.id, "hello", "user", "k1")  # the client's resend
        assert sent.created and sent.message.seq == 1
        assert [m.seq for m in await store.list_messages(conv.id, 10, None, None)] == [1]
    finally:
        await store.close()
        server.stop()
        collect_cancelled_connects()
        assert not os.path.exists(server.data_dir)


async def test_timestamps_stay_iso_text(mongo):
    alice = await mongo.create_user("alice", "h")
    conv = await mongo.create_conversation(alice.id, "t", "demo", [])
    assert conv.created_at <= utcnow() and conv.created_at.endswith("Z")
    page = await mongo.list_conversations(alice.id, 10, utcnow() + "x")
    assert [c.id for c in page] == [conv.id]  # `before` compares as text, as in every store
