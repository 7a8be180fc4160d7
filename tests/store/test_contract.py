"""The store contract: every back-end keeps the protocol's guarantees (PROTOCOL.md §6).

Each test runs once per back-end in tests/store/backends.py, on a fresh database.
"""
from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter

import pytest

from chatd.errors import Conflict, NotFound
from chatd.models import Conversation, Usage
from chatd.store import StoredEvent
from chatd.store.urls import store_from_url

pytestmark = pytest.mark.asyncio

WRITER = os.path.join(os.path.dirname(__file__), "writer.py")


def kind(e: StoredEvent) -> str:
    """The frame a stored change is replayed as."""
    if isinstance(e.record, Conversation):
        return "conversation_updated"
    return "message_added" if e.record.is_reply else "message_received"


async def _conv(store, name="alice"):
    user = await store.create_user(name, "hash")
    return await store.create_conversation(user.id, "t", "demo", [])


async def test_usernames_are_unique(store):
    alice = await store.create_user("alice", "h", ["admin"])
    assert alice.roles == ["admin"]
    with pytest.raises(Conflict):
        await store.create_user("alice", "h2")
    found = await store.get_user_by_name("alice")
    assert found.id == alice.id and found.password_hash == "h" and found.roles == ["admin"]
    assert (await store.get_user(alice.id)).password_hash is None
    assert await store.get_user_by_name("nobody") is None


async def test_seq_counts_every_change_once_and_replays_in_order(store):
    conv = await _conv(store)
    cid, uid = conv.id, conv.owner_id
    other = await store.create_conversation(uid, "other", "demo", [])
    assert conv.seq == 0
    m1 = (await store.add_message(cid, uid, "q", "user")).message
    reply = await store.create_reply(cid, m1.id, "demo", "me")
    assert reply.seq is None and reply.status == "streaming"  # a placeholder is not a change yet
    m2 = (await store.add_message(cid, uid, "q2", "user")).message
    done, done_conv = await store.finish_reply(reply.id, "partial answer", "complete", Usage.of(1, 2), "stop")
    assert done_conv is not None and done_conv.last_message == done and done_conv.seq == 3
    s_rename = (await store.update_conversation(cid, title="renamed")).seq
    s_delete = (await store.delete_conversation(cid)).seq
    assert [m1.seq, m2.seq, done.seq, s_rename, s_delete] == [1, 2, 3, 4, 5]
    assert done.status == "complete" and done.content == "partial answer" and done.finish_reason == "stop"
    assert done.usage == Usage.of(1, 2)
    # Another conversation has its own sequence.
    assert (await store.add_message(other.id, uid, "hi", "user")).message.seq == 1
    events = await store.events_since(cid, 0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [kind(e) for e in events] == ["message_received", "message_received", "message_added",
                                         "conversation_updated", "conversation_updated"]
    assert events[3].record.title == "renamed" and events[-1].record.deleted is True
    assert [e.seq for e in await store.events_since(cid, 3)] == [4, 5]
    assert await store.events_since(cid, 5) == []
    assert (await store.get_conversation(cid)).deleted is True


async def test_seq_has_no_gaps_with_writers_in_two_processes(store, store_url):
    conv = await _conv(store)
    n = 40
    procs = [await asyncio.create_subprocess_exec(sys.executable, WRITER, store_url, str(conv.id), str(conv.owner_id),
                                                  str(n), tag, stdout=asyncio.subprocess.PIPE)
             for tag in ("p1", "p2")]
    local = [store.add_message(conv.id, conv.owner_id, f"local {i}", "user") for i in range(n)]
    local_results = await asyncio.gather(*local)
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    lines = [line.split() for out, _ in outputs for line in out.decode().splitlines()]
    created = [(int(seq), cmid) for seq, cmid, new in lines if new == "1"]
    resent = [(int(seq), cmid) for seq, cmid, new in lines if new == "0"]
    assert len(created) == 2 * n and len(resent) == n  # every even message was sent twice
    by_cmid = {cmid: seq for seq, cmid in created}
    assert all(by_cmid[cmid] == seq for seq, cmid in resent)  # a resend answers the original's seq
    seqs = sorted([seq for seq, _ in created] + [r.message.seq for r in local_results])
    assert seqs == list(range(1, 3 * n + 1))  # no gap, no duplicate, across three writers
    stored = await store.list_messages(conv.id, 1000, None, None)
    assert [m.seq for m in stored] == list(range(1, 3 * n + 1))
    assert (await store.get_conversation(conv.id)).seq == 3 * n


async def test_client_msg_id_is_unique_under_a_concurrent_resend(store):
    conv = await _conv(store)
    cid, uid = conv.id, conv.owner_id
    first, created, _ = await store.add_message(cid, uid, "hello", "user", "c-1")
    assert created and first.seq == 1
    again, created, changed = await store.add_message(cid, uid, "hello (resent)", "user", "c-1")
    assert not created and changed is None and again == first
    assert await store.find_by_client_msg_id(cid, "c-1") == first
    # Messages without a client_msg_id are never deduplicated.
    a = (await store.add_message(cid, uid, "x", "user")).message
    b = (await store.add_message(cid, uid, "x", "user")).message
    assert a.id != b.id and (a.seq, b.seq) == (2, 3)
    # Ten concurrent resends make one row and take one seq.
    results = await asyncio.gather(*(store.add_message(cid, uid, "race", "user", "c-2") for _ in range(10)))
    assert sum(1 for r in results if r.created) == 1
    assert len({r.message.id for r in results}) == 1 and results[0].message.seq == 4
    assert [m.seq for m in await store.list_messages(cid, 100, None, None)] == [1, 2, 3, 4]
    # The same client_msg_id in another conversation is another message.
    other = await store.create_conversation(uid, "o", "demo", [])
    assert (await store.add_message(other.id, uid, "race", "user", "c-2")).created


async def test_checkpoints_keep_the_text_of_a_streaming_reply_only(store):
    conv = await _conv(store)
    m = (await store.add_message(conv.id, conv.owner_id, "q", "user")).message
    reply = await store.create_reply(conv.id, m.id, "demo", "host:1:abc")
    await store.checkpoint_reply(reply.id, "par")
    await store.checkpoint_reply(reply.id, "partial")
    got = await store.get_message(reply.id)
    assert got.content == "partial" and got.status == "streaming" and got.seq is None and got.owner == "host:1:abc"
    listed = await store.list_messages(conv.id, 10, None, None)
    assert [x.id for x in listed] == [m.id, reply.id]  # the streaming reply follows the settled ones
    assert listed[-1].content == "partial"
    done, _ = await store.finish_reply(reply.id, "partial answer", "complete", None, "stop")
    await store.checkpoint_reply(reply.id, "late checkpoint")  # after the end: ignored
    got = await store.get_message(reply.id)
    assert got == done and got.content == "partial answer" and got.owner is None


async def test_orphan_sweep_finishes_each_reply_once(store):
    conv = await _conv(store)
    m = (await store.add_message(conv.id, conv.owner_id, "q", "user")).message
    mine = await store.create_reply(conv.id, m.id, "demo", "alive:1:x")
    orphan = await store.create_reply(conv.id, m.id, "demo", "dead:2:y")
    await store.checkpoint_reply(orphan.id, "half of it")
    streaming = {r.id: r.owner for r in await store.streaming_replies()}
    assert streaming == {mine.id: "alive:1:x", orphan.id: "dead:2:y"}
    # Two sweepers and the owner race to finish the orphan: one seq, one outcome.
    outcomes = await asyncio.gather(
        store.finish_reply(orphan.id, "half of it", "interrupted", None, "cancelled"),
        store.finish_reply(orphan.id, "half of it", "interrupted", None, "cancelled"),
        store.finish_reply(orphan.id, "half of it and more", "complete", None, "stop"))
    finished = [conv for _, conv in outcomes if conv is not None]
    assert len(finished) == 1
    final = await store.get_message(orphan.id)
    assert all(msg == final for msg, _ in outcomes)
    assert final.seq == 2
    assert [r.id for r in await store.streaming_replies()] == [mine.id]
    with pytest.raises(NotFound):
        await store.finish_reply(10**9, "", "error", None, "error")


async def test_list_messages_pages_by_seq(store):
    conv = await _conv(store)
    cid, uid = conv.id, conv.owner_id
    for i in range(1, 8):
        await store.add_message(cid, uid, f"m{i}", "user")
    seqs = lambda ms: [m.seq for m in ms]  # noqa: E731
    assert seqs(await store.list_messages(cid, 3, None, None)) == [5, 6, 7]
    assert seqs(await store.list_messages(cid, 3, 5, None)) == [2, 3, 4]
    assert seqs(await store.list_messages(cid, 10, None, 5)) == [6, 7]
    assert seqs(await store.list_messages(cid, 10, 6, 2)) == [3, 4, 5]
    assert seqs(await store.list_messages(cid, 10, 1, None)) == []
    # History for the provider: settled, non-empty messages up to one message, oldest first.
    history = await store.history(cid, (await store.list_messages(cid, 1, 5, None))[0].id, 3)
    assert [m.content for m in history] == ["m2", "m3", "m4"]


async def test_conversation_pages_neither_skip_nor_repeat(store):
    alice = await store.create_user("alice", "h")
    bob = await store.create_user("bob", "h")
    convs = [await store.create_conversation(alice.id, f"c{i}", "demo", []) for i in range(7)]
    await store.create_conversation(bob.id, "not alice's", "demo", [])
    shared = await store.create_conversation(bob.id, "shared", "demo", [alice.id])
    await asyncio.sleep(0.01)  # updated_at has millisecond resolution: the bump is later than every creation
    await store.add_message(convs[2].id, alice.id, "bump", "user")  # c2 becomes the newest
    await store.delete_conversation(convs[4].id)  # deleted ones are not listed
    seen: list = []
    before = before_id = None
    while True:
        page = await store.list_conversations(alice.id, 3, before, before_id)
        seen.extend(page)
        if len(page) < 3:
            break
        before, before_id = page[-1].updated_at, page[-1].id
    ids = [c.id for c in seen]
    assert len(ids) == len(set(ids)) == 7  # 6 of hers alive + the shared one
    assert ids[0] == convs[2].id and seen[0].last_message.content == "bump"
    assert set(ids) == {c.id for c in convs if c.id != convs[4].id} | {shared.id}
    keys = [(c.updated_at, str(c.id)) for c in seen]
    assert [c.updated_at for c in seen] == sorted((c.updated_at for c in seen), reverse=True)
    assert len(keys) == len(set(keys))
    assert set(next(c for c in seen if c.id == shared.id).member_ids) == {alice.id, bob.id}


async def test_membership_and_foreign_ids(store):
    conv = await _conv(store)
    bob = await store.create_user("bob", "h")
    cid = conv.id
    assert await store.is_member(cid, conv.owner_id)
    assert not await store.is_member(cid, bob.id)
    assert await store.member_conversation(cid, bob.id) is None
    updated = await store.update_conversation(cid, add_member_ids=[bob.id])
    assert bob.id in updated.member_ids and await store.is_member(cid, bob.id)
    assert (await store.member_conversation(cid, bob.id)).id == cid
    # Ids that name nothing, or cannot be ids of this store, find nothing and raise nothing.
    for bad in (999999, "not-an-id", 2**70, -1):
        assert not await store.is_member(bad, conv.owner_id)
        assert await store.get_conversation(bad) is None
        assert await store.get_message(bad) is None
        assert await store.get_user(bad) is None
        assert await store.member_conversation(bad, conv.owner_id) is None
    with pytest.raises(NotFound):
        await store.add_message(999999, conv.owner_id, "x", "user")
    # Seq bounds beyond 64 bits (a client may send any integer) are just bounds.
    await store.add_message(cid, conv.owner_id, "x", "user")
    assert await store.events_since(cid, 2**70) == []
    assert [m.seq for m in await store.list_messages(cid, 2**70, 2**70, -(2**70))] == [2]


async def test_missing_users_names_the_ids_that_are_no_users(store, backend):
    alice = await store.create_user("alice", "h")
    bob = await store.create_user("bob", "h")
    assert await store.missing_users([]) == []
    assert await store.missing_users([bob.id, alice.id, bob.id]) == []
    other = 999999 if backend != "mongodb" else "0" * 24  # well-formed for the store, but nobody's
    bad = [other, "not-an-id", 2**70, -1, 0]
    assert await store.missing_users([alice.id, *bad, bob.id, other]) == bad
    many = [alice.id] * 500 + [bob.id] * 500
    assert await store.missing_users(many) == []


async def test_migrations_are_recorded_and_not_rerun(store, store_url):
    alice = await store.create_user("alice", "h")
    applied = await store.migrations_applied()
    assert applied == list(range(1, len(applied) + 1)) and applied
    # A second process opening the same database (and a reopen) runs nothing again.
    again = store_from_url(store_url)
    await again.open()
    try:
        assert await again.migrations_applied() == applied
        assert (await again.get_user_by_name("alice")).id == alice.id
    finally:
        await again.close()
    assert Counter(await store.migrations_applied()) == Counter(applied)
    assert await store.ping()
