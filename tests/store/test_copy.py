"""`chatd store copy`: a populated store copied into each other back-end serves the same history."""
from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from chatd.models import Usage
from chatd.store.copy import CopyError, copy_store, redacted
from chatd.store.rows import KINDS
from chatd.store.sqlite import SQLiteStore
from chatd.store.urls import store_from_url, store_kind
from chatd.testing import ChatdTestClient, test_settings
from chatd.testing import serving as serve
from chatd.testing.clients import PASSWORD

from .backends import BACKENDS

pytestmark = pytest.mark.asyncio


def _settings(tmp_path: Path, url: str):
    kind = store_kind(url)
    return test_settings(tmp_path, store=kind, store_url="" if kind == "sqlite" else url,
                         sqlite_path=url.removeprefix("sqlite:///") if kind == "sqlite" else "")


def serving(tmp_path: Path, url: str):
    """A real chatd on the store at `url`."""
    return serve(_settings(tmp_path, url))


async def _login(client: ChatdTestClient, username: str) -> str:
    status, body, _ = await client.request("POST", "/api/v1/auth/login",
                                           body={"username": username, "password": PASSWORD})
    assert status == 200, body
    return body["access_token"]


async def _populate(client: ChatdTestClient) -> None:
    """Two users chatting with the demo assistant: replies, a rename, a shared and a deleted conversation."""
    alice, alice_token = await client.register("alice")
    bob, bob_token = await client.register("bob")
    ws = await client.ws(alice_token)
    for n in range(3):
        conv = await client.conversation(alice_token, title=f"talk {n}",
                                         member_ids=[bob["id"]] if n == 1 else [])
        await ws.join(conv["id"])
        for k in range(2):
            await ws.send({"type": "send_message", "ref": f"{n}.{k}", "data": {
                "conversation_id": conv["id"], "content": f"/echo line {n}.{k} with ünïcode ✓",
                "client_msg_id": f"c{n}.{k}"}})
            await ws.collect_until("message_added", timeout=15)
        status, _, _ = await client.request("PATCH", f"/api/v1/conversations/{conv['id']}", alice_token,
                                            body={"title": f"renamed {n}"})
        assert status == 200
    status, _, _ = await client.request("DELETE", f"/api/v1/conversations/{conv['id']}", alice_token)
    assert status in (200, 204)
    bobs = await client.conversation(bob_token, title="bob's own")
    bws = await client.ws(bob_token)
    await bws.join(bobs["id"])
    await bws.send({"type": "send_message", "ref": "b", "data": {"conversation_id": bobs["id"], "content": "hi"}})
    await bws.collect_until("message_added", timeout=15)


async def _history(client: ChatdTestClient) -> dict:
    """Everything each user is served: listings, every conversation's messages and its replay from seq 0."""
    seen: dict = {}
    for username in ("alice", "bob"):
        token = await _login(client, username)
        status, listing, _ = await client.request("GET", "/api/v1/conversations", token)
        assert status == 200
        convs = []
        for conv in listing["conversations"]:
            status, page, _ = await client.request("GET", f"/api/v1/conversations/{conv['id']}/messages", token)
            assert status == 200
            ws = await client.ws(token)
            await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"], "since_seq": 0}})
            replay = [(f["type"], f["data"].get("message", f["data"].get("conversation", {})).get("seq"))
                      for f in await ws.collect_until("joined", timeout=10) if f["type"] != "joined"]
            ws.close()
            convs.append({"id": conv["id"], "title": conv["title"], "members": len(conv["member_ids"]),
                          "messages": [(m["seq"], m["message_type"], m["content"], m["status"],
                                        m.get("client_msg_id"), m.get("usage")) for m in page["messages"]],
                          "replay": replay})
        seen[username] = convs
    return seen


@pytest_asyncio.fixture
async def populated(tmp_path) -> AsyncIterator[tuple[Path, str, dict]]:
    """A SQLite store filled through a real server, and the history that server served."""
    tmp = tmp_path / "source"
    tmp.mkdir()
    url = f"sqlite:///{tmp / 'source.sqlite3'}"
    async with serving(tmp, url) as client:
        await _populate(client)
        history = await _history(client)
    assert sum(len(c["messages"]) for c in history["alice"]) == 8 and len(history["bob"]) == 2
    yield tmp, url, history


async def _cli_copy(tmp_path: Path, from_url: str, to_url: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatd", "store", "copy", from_url, to_url, "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("target", ["postgres", "mongodb"])
async def test_a_copied_sqlite_store_serves_the_same_history(populated, target, tmp_path):
    tmp_path = tmp_path / "target"
    tmp_path.mkdir()
    _, source_url, history = populated
    async with BACKENDS[target](tmp_path) as to_url:
        code, out, err = await _cli_copy(tmp_path, source_url, to_url)
        assert code == 0, err
        assert "verified: every row copied, counts and checksums match" in out, out
        counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:] if line.startswith("  ")}
        assert set(counts) == set(KINDS) and counts["users"] == 2 and counts["conversations"] == 4
        code, _, err = await _cli_copy(tmp_path, source_url, to_url)  # again: the destination is not empty
        assert code == 1 and err.strip().splitlines() == [
            "chatd: error: the destination store already holds users; store copy needs an empty store"], err
        assert counts["messages"] == 14  # 2 messages + 2 replies in each of alice's three (one deleted), 1 + 1 in bob's
        async with serving(tmp_path, to_url) as client:
            copied = await _history(client)
            if target == "mongodb":  # new ObjectIds; PostgreSQL keeps SQLite's ids, so page URLs stay valid
                for convs in (*history.values(), *copied.values()):
                    for conv in convs:
                        conv.pop("id")
            assert copied == history
            # The copy goes on: a new message takes the next seq, new ids do not collide with copied ones.
            token = await _login(client, "bob")
            _, listing, _ = await client.request("GET", "/api/v1/conversations", token)
            conv = next(c for c in listing["conversations"] if c["title"] == "bob's own")
            last_seq = max(seq for _, seq in next(c for c in copied["bob"] if c["title"] == "bob's own")["replay"])
            ws = await client.ws(token)
            await ws.join(conv["id"])
            await ws.send({"type": "send_message", "ref": "n", "data": {"conversation_id": conv["id"],
                                                                     "content": "after the move"}})
            received = (await ws.expect("message_received"))["data"]["message"]
            assert received["seq"] == last_seq + 1
            added = (await ws.collect_until("message_added", timeout=15))[-1]["data"]["message"]
            assert added["seq"] == last_seq + 2
            _, alice, _ = await client.request("POST", "/api/v1/auth/register",
                                               body={"username": "carol", "password": PASSWORD})
            assert alice["user"]["id"] not in {c["owner_id"] for c in listing["conversations"]}


async def _filled(store) -> None:
    alice = await store.create_user("alice", "hash-a", ["admin"])
    bob = await store.create_user("bob", None)
    conv = await store.create_conversation(alice.id, "first", "demo", [bob.id])
    msg = (await store.add_message(conv.id, alice.id, "hello", "user", "k1")).message
    reply = await store.create_reply(conv.id, msg.id, "demo", "proc-1")
    await store.finish_reply(reply.id, "hi there", "complete", Usage.of(3, 2), "stop")
    await store.update_conversation(conv.id, title="renamed")
    streaming = await store.create_reply(conv.id, msg.id, "demo", "proc-2")
    await store.checkpoint_reply(streaming.id, "half a rep")
    other = await store.create_conversation(bob.id, "gone", "demo", [])
    await store.add_message(other.id, bob.id, "bye", "user", None)
    await store.delete_conversation(other.id)


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
async def test_every_row_survives_a_copy_out_of_mongodb(target, tmp_path):
    async with BACKENDS["mongodb"](tmp_path / "m") as from_url, BACKENDS[target](tmp_path / "t") as to_url:
        source, dest = store_from_url(from_url), store_from_url(to_url)
        await source.open()
        await dest.open()
        try:
            await _filled(source)
            report = await copy_store(source, dest)
            assert report.ok and {k: p.count for k, p in report.kinds.items()} == {
                "users": 2, "conversations": 2, "messages": 4, "events": 2}
            alice = await dest.get_user_by_name("alice")
            assert alice is not None and isinstance(alice.id, int) and alice.roles == ["admin"]
            assert alice.password_hash == "hash-a"
            [conv] = await dest.list_conversations(alice.id, 10, None, None)
            assert conv.title == "renamed" and conv.seq == 3 and isinstance(conv.id, int)
            messages = await dest.list_messages(conv.id, 10, None, None)
            assert [(m.seq, m.content, m.status) for m in messages] == [
                (1, "hello", "complete"), (2, "hi there", "complete"), (None, "half a rep", "streaming")]
            assert messages[1].reply_to == messages[0].id and messages[1].usage == Usage.of(3, 2)
            assert [s.owner for s in await dest.streaming_replies()] == ["proc-2"]
            assert [e.seq for e in await dest.events_since(conv.id, 0)] == [1, 2, 3]
            # The destination goes on numbering after the copied rows.
            carol = await dest.create_user("carol", None)
            assert carol.id == max(alice.id, (await dest.get_user_by_name("bob")).id) + 1
        finally:
            await source.close()
            await dest.close()


async def test_a_store_that_is_not_empty_is_refused(tmp_path):
    source, dest = SQLiteStore(str(tmp_path / "a.sqlite3")), SQLiteStore(str(tmp_path / "b.sqlite3"))
    await source.open()
    await dest.open()
    try:
        await _filled(source)
        await dest.create_user("somebody", None)
        with pytest.raises(CopyError, match="already holds users"):
            await copy_store(source, dest)
        assert await dest.count_rows("conversations") == 0
    finally:
        await source.close()
        await dest.close()


class _LossyStore(SQLiteStore):
    """A destination that silently changes one message on the way in (for the verifier to catch)."""

    async def import_rows(self, kind, rows):
        if kind == "messages":
            rows = [msgspec.structs.replace(rows[0], content="tampered"), *rows[1:]]
        await super().import_rows(kind, rows)


async def test_a_copy_that_does_not_match_fails_verification(tmp_path):
    source, dest = SQLiteStore(str(tmp_path / "a.sqlite3")), _LossyStore(str(tmp_path / "b.sqlite3"))
    await source.open()
    await dest.open()
    try:
        await _filled(source)
        report = await copy_store(source, dest)
        assert not report.kinds["messages"].ok and report.kinds["users"].ok and not report.ok
        assert report.kinds["messages"].count == report.kinds["messages"].copied_count
    finally:
        await source.close()
        await dest.close()


async def test_printed_urls_hide_passwords():
    assert redacted("postgresql://chatd:s3cret@db.example:5432/chatd") == "postgresql://chatd:***@db.example:5432/chatd"
    assert redacted("sqlite:///var/lib/chatd/chatd.sqlite3") == "sqlite:///var/lib/chatd/chatd.sqlite3"
    assert redacted("mongodb://db.example/chatd") == "mongodb://db.example/chatd"
