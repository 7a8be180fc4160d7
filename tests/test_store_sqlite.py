"""The embedded SQLite store: WAL, migrations, seq and client_msg_id rules; the secret file on disk."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import stat

import pytest
import pytest_asyncio

from chatd.errors import Conflict
from chatd.models import Conversation, Usage
from chatd.store import StoredEvent
from chatd.store.sqlite import MIGRATIONS, SQLiteStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "db" / "chatd.sqlite3"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture
async def conv(store):
    alice = await store.create_user("alice", "hash")
    return await store.create_conversation(alice.id, "t", "demo", [])


def raw(path):
    return sqlite3.connect(path)


async def test_server_store_file_is_wal_with_migrations_recorded(chatd):
    _, token = await chatd.register()
    await chatd.conversation(token, title="t")
    path = chatd.server.settings.db_path
    assert os.path.dirname(path) == chatd.server.settings.data_dir
    db = raw(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"users", "conversations", "members", "messages", "conversation_events"} <= tables
        cols = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
        assert {"seq", "client_msg_id"} <= cols
        # Passwords are stored as argon2id hashes, never in clear.
        pw = db.execute("SELECT password_hash FROM users").fetchone()[0]
        assert pw.startswith("$argon2id$") and "correct horse" not in pw
    finally:
        db.close()
    assert os.path.exists(path + "-wal")


async def test_jwt_secret_file_is_created_0600(chatd):
    path = os.path.join(chatd.server.settings.data_dir, "jwt_secret")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    with open(path, encoding="ascii") as f:
        secret = f.read().strip()
    assert len(secret.encode()) >= 32


async def test_jwt_secret_survives_restart(tmp_path):
    from chatd.app import start_server
    from chatd.pytest_plugin import ChatdTestClient, test_settings

    settings = test_settings(tmp_path)
    server = await start_server(settings)
    client = ChatdTestClient(server)
    try:
        _, token = await client.register("alice")
        secret = (tmp_path / "jwt_secret").read_text()
    finally:
        client.close()
        await server.stop()
    server = await start_server(settings)
    client = ChatdTestClient(server)
    try:
        assert (tmp_path / "jwt_secret").read_text() == secret
        status, me, _ = await client.request("GET", "/api/v1/me", token)
        assert status == 200 and me["username"] == "alice"
    finally:
        client.close()
        await server.stop()


async def test_reopen_does_not_rerun_migrations(tmp_path):
    path = str(tmp_path / "x.sqlite3")
    s = SQLiteStore(path)
    await s.open()
    await s.create_user("alice", "h")
    await s.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        assert (await s.get_user_by_name("alice")).username == "alice"
    finally:
        await s.close()
    db = raw(path)
    try:
        assert [r[0] for r in db.execute("SELECT version FROM schema_version")] == list(range(1, len(MIGRATIONS) + 1))
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


async def test_usernames_are_unique(store):
    await store.create_user("alice", "h")
    with pytest.raises(Conflict):
        await store.create_user("alice", "h2")


async def test_client_msg_id_resend_returns_original(store, conv):
    cid = conv.id
    uid = conv.owner_id
    first, created, _ = await store.add_message(cid, uid, "hello", "user", "c-1")
    assert created and first.seq == 1
    again, created, changed = await store.add_message(cid, uid, "hello (resent)", "user", "c-1")
    assert changed is None
    assert not created and again == first
    assert (await store.find_by_client_msg_id(cid, "c-1")) == first
    # Messages without a client_msg_id are never deduplicated.
    a = (await store.add_message(cid, uid, "x", "user")).message
    b = (await store.add_message(cid, uid, "x", "user")).message
    assert a.id != b.id and (a.seq, b.seq) == (2, 3)
    # Concurrent resends still make one row.
    results = await asyncio.gather(*(store.add_message(cid, uid, "race", "user", "c-2") for _ in range(5)))
    assert sum(1 for r in results if r.created) == 1
    assert len({r.message.id for r in results}) == 1
    db = raw(store.path)
    try:
        assert db.execute("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'c-2'").fetchone()[0] == 1
    finally:
        db.close()


async def test_seq_per_conversation_counts_every_change_once(store, conv):
    cid, uid = conv.id, conv.owner_id
    other = await store.create_conversation(uid, "other", "demo", [])
    assert conv.seq == 0
    m1 = (await store.add_message(cid, uid, "q", "user")).message
    reply = await store.create_reply(cid, m1.id, "demo", "me")
    assert reply.seq is None and reply.status == "streaming"  # a placeholder is not a change yet
    m2 = (await store.add_message(cid, uid, "q2", "user")).message
    await store.checkpoint_reply(reply.id, "partial")
    done, done_conv = await store.finish_reply(reply.id, "partial answer", "complete", Usage.of(1, 2), "stop")
    assert done_conv is not None and done_conv.last_message == done and done_conv.seq == 3
    s_rename = (await store.update_conversation(cid, title="renamed")).seq
    s_delete = (await store.delete_conversation(cid)).seq
    assert [m1.seq, m2.seq, done.seq, s_rename, s_delete] == [1, 2, 3, 4, 5]
    assert done.status == "complete" and done.content == "partial answer"
    assert done.usage is not None and done.usage.total_tokens == 3
    # Finishing twice does not take another seq.
    again, again_conv = await store.finish_reply(reply.id, "other", "error", None, "error")
    assert again_conv is None
    assert again.seq == 3 and again.content == "partial answer"
    # Another conversation has its own sequence.
    o1 = (await store.add_message(other.id, uid, "hi", "user")).message
    assert o1.seq == 1
    events = await store.events_since(cid, 0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [kind(e) for e in events] == ["message_received", "message_received", "message_added",
                                         "conversation_updated", "conversation_updated"]
    assert isinstance(events[-1].record, Conversation) and events[-1].record.deleted is True
    assert [e.seq for e in await store.events_since(cid, 3)] == [4, 5]


async def test_list_messages_window(store, conv):
    cid, uid = conv.id, conv.owner_id
    for i in range(1, 8):
        await store.add_message(cid, uid, f"m{i}", "user")
    seqs = lambda ms: [m.seq for m in ms]  # noqa: E731
    assert seqs(await store.list_messages(cid, 3, None, None)) == [5, 6, 7]
    assert seqs(await store.list_messages(cid, 3, 5, None)) == [2, 3, 4]
    assert seqs(await store.list_messages(cid, 10, None, 5)) == [6, 7]
    assert seqs(await store.list_messages(cid, 10, 6, 2)) == [3, 4, 5]


async def test_membership(store, conv):
    bob = await store.create_user("bob", "h")
    cid = conv.id
    assert await store.is_member(cid, conv.owner_id)
    assert not await store.is_member(cid, bob.id)
    assert not await store.is_member(99999, conv.owner_id)
    assert not await store.is_member("not-an-id", conv.owner_id)
    updated = await store.update_conversation(cid, add_member_ids=[bob.id])
    assert bob.id in updated.member_ids and await store.is_member(cid, bob.id)


def kind(e: StoredEvent) -> str:
    """The frame a stored change is replayed as."""
    if isinstance(e.record, Conversation):
        return "conversation_updated"
    return "message_added" if e.record.is_reply else "message_received"
