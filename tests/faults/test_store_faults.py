"""The store fails mid-reply: the stream goes on, clients are told, the text is kept and stored when the store returns.

Real failures only: a second SQLite connection holding `BEGIN EXCLUSIVE` on the file, a data
directory on a real tmpfs that fills up, and a PostgreSQL server of the test's own stopped with
`pg_ctl -m fast` and started again.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import pytest_asyncio

from chatd.replies.reply import STORAGE_FAILED
from chatd.testing import ChatdTestClient, ScriptedPlugin, free_port, scripted_settings, serving, test_settings
from chatd.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.asyncio

DELTAS = [f"w{i} " for i in range(150)]  # 1.5 s at 10 ms each


def _settings(tmp_path: Path, **extra):
    return test_settings(tmp_path, **scripted_settings(DELTAS, delay=0.01), checkpoint_interval_s=0.1,
                         max_concurrent_replies=1, **extra)


def _serving(settings):
    return serving(settings, extra_plugins=[ScriptedPlugin()])


async def _start_reply(chatd: ChatdTestClient):
    user, token = await chatd.register("alice")
    conv = await chatd.conversation(token)
    ws = await chatd.ws(token)
    await ws.join(conv["id"])
    await ws.send({"type": "send_message", "ref": "s", "data": {"conversation_id": conv["id"], "content": "go",
                                                                "client_msg_id": "m1"}})
    ack = await ws.expect("ack")
    first = await ws.expect("stream_content", timeout=10)
    return user, token, conv["id"], ws, ack, first


def _slots(chatd: ChatdTestClient) -> dict:
    return dict(chatd.server.replies.limiter._slots)  # the in-process limiter's slots in use


async def _stored_reply(chatd, token, cid):
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token)
    assert status == 200, body
    return [m for m in body["messages"] if m["message_type"] == "assistant"]


def _text(frames, first) -> str:
    chunks = [first["data"]] + [f["data"] for f in frames if f["type"] == "stream_content"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    return "".join(c["content"] for c in chunks)


async def test_a_reply_outlives_a_locked_sqlite_file(tmp_path):
    settings = _settings(tmp_path)
    async with _serving(settings) as chatd:
        user, token, cid, ws, ack, first = await _start_reply(chatd)
        # Another process takes the write lock and keeps it past the store's 5 s busy timeout.
        locker = sqlite3.connect(settings.db_path, timeout=0, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        try:
            frames = await ws.collect_until("stream_error", timeout=20)
            error = frames[-1]["data"]
            assert error["code"] == "INTERNAL_ERROR" and error["message"] == STORAGE_FAILED
            # The stream did not wait for the store: every chunk came while the file was locked.
            assert _text(frames, first) == "".join(DELTAS)
            assert not any(f["type"] == "stream_complete" for f in frames)
            assert _slots(chatd) == {}  # the user's slot is free at once
            failed_after = time.monotonic() - locked_at
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        unlocked_at = time.monotonic()
        added = (await ws.expect("message_added", timeout=10))["data"]["message"]
        recovered_in = time.monotonic() - unlocked_at
        assert added["status"] == "complete" and added["content"] == "".join(DELTAS)
        [stored] = await _stored_reply(chatd, token, cid)
        assert stored["content"] == "".join(DELTAS) and stored["status"] == "complete"
        assert chatd.server.replies.active_count == 0 and _slots(chatd) == {}
        # The socket and the server carry on: the next reply streams and is stored.
        await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "again"}})
        frames = await ws.collect_until("message_added", timeout=15,
                                        where=lambda f: f["data"]["message"]["message_type"] == "assistant")
        assert frames[-1]["data"]["message"]["status"] == "complete"
        print(f"locked sqlite: stream_error after {failed_after:.1f} s, stored {recovered_in:.2f} s after unlock")


async def test_a_send_to_a_locked_sqlite_file_is_a_clear_error_and_loses_nothing(tmp_path):
    settings = _settings(tmp_path)
    async with _serving(settings) as chatd:
        token, conv, ws = await chatd.joined()
        locker = sqlite3.connect(settings.db_path, timeout=0, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            await ws.send({"type": "send_message", "ref": "x", "data": {
                "conversation_id": conv["id"], "content": "while locked", "client_msg_id": "k"}})
            error = await ws.expect("error", timeout=10)
            assert error["data"]["code"] == "INTERNAL_ERROR" and "database is unavailable" in error["data"]["message"]
            assert error["data"]["ref"] == "x"
            status, body, _ = await chatd.request("GET", "/api/v1/conversations", token)
            assert status == 200  # reads go on: WAL readers do not wait for the writer's lock
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # The client's resend with the same client_msg_id is stored once.
        await ws.send({"type": "send_message", "ref": "y", "data": {
            "conversation_id": conv["id"], "content": "while locked", "client_msg_id": "k"}})
        assert (await ws.expect("ack", timeout=10))["data"]["client_msg_id"] == "k"
        await ws.collect_until("message_added", timeout=15)
        status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{conv['id']}/messages", token)
        assert [m["content"] for m in body["messages"] if m["message_type"] == "user"] == ["while locked"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB tmpfs as the data directory (needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write zeros until the filesystem is full (the last partial block fails on close)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


async def test_a_reply_outlives_a_full_disk(tmp_path, small_disk):
    settings = _settings(small_disk)
    async with _serving(settings) as chatd:
        user, token, cid, ws, ack, first = await _start_reply(chatd)
        filler = small_disk / "filler"
        await asyncio.to_thread(_fill, filler)
        frames = await ws.collect_until("stream_error", timeout=20)
        assert frames[-1]["data"]["code"] == "INTERNAL_ERROR" and frames[-1]["data"]["message"] == STORAGE_FAILED
        assert _text(frames, first) == "".join(DELTAS) and _slots(chatd) == {}
        status, _, _ = await chatd.request("GET", "/readyz")
        assert status == 503  # the store cannot write: not ready
        os.unlink(filler)
        added = (await ws.expect("message_added", timeout=10))["data"]["message"]
        assert added["status"] == "complete" and added["content"] == "".join(DELTAS)
        [stored] = await _stored_reply(chatd, token, cid)
        assert stored["content"] == "".join(DELTAS)
        assert (await chatd.request("GET", "/readyz"))[0] == 200


@pytest_asyncio.fixture
async def own_postgres():
    """A PostgreSQL server of this test's own, on a free port."""
    server = PostgresServer(free_port())
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.remove)


async def test_a_reply_outlives_a_postgres_restart(tmp_path, own_postgres):
    settings = _settings(tmp_path, store="postgres", store_url=own_postgres.url)
    async with _serving(settings) as chatd:
        user, token, cid, ws, ack, first = await _start_reply(chatd)
        await asyncio.to_thread(own_postgres.stop)
        stopped_at = time.monotonic()
        frames = await ws.collect_until("stream_error", timeout=20)
        assert frames[-1]["data"]["code"] == "INTERNAL_ERROR" and frames[-1]["data"]["message"] == STORAGE_FAILED
        assert _text(frames, first) == "".join(DELTAS) and _slots(chatd) == {}
        failed_after = time.monotonic() - stopped_at
        # A send while the server is away: a clear error, and the socket keeps working.
        await ws.send({"type": "send_message", "ref": "away", "data": {"conversation_id": cid, "content": "x"}})
        error = await ws.expect("error", timeout=15)
        assert error["data"]["code"] == "INTERNAL_ERROR" and "database is unavailable" in error["data"]["message"]
        await asyncio.to_thread(own_postgres.start)
        started_at = time.monotonic()
        added = (await ws.expect("message_added", timeout=15))["data"]["message"]
        recovered_in = time.monotonic() - started_at
        assert added["status"] == "complete" and added["content"] == "".join(DELTAS)
        status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token)
        assert status == 200
        assert [(m["message_type"], m["seq"]) for m in body["messages"]] == [("user", 1), ("assistant", 2)]
        assert body["messages"][0]["id"] == ack["data"]["message_id"]  # the acked message survived
        assert body["messages"][1]["content"] == "".join(DELTAS)
        print(f"postgres restart: stream_error after {failed_after:.1f} s, stored {recovered_in:.2f} s after start")


async def test_a_removed_data_directory_refuses_sends_and_makes_the_process_not_ready(tmp_path):
    data = tmp_path / "data"
    settings = _settings(data)
    async with _serving(settings) as chatd:
        token, conv, ws = await chatd.joined()
        assert (await chatd.request("GET", "/readyz"))[0] == 200
        await asyncio.to_thread(shutil.rmtree, data)
        await ws.send({"type": "send_message", "ref": "gone", "data": {"conversation_id": conv["id"],
                                                                     "content": "into the void"}})
        error = await ws.expect("error", timeout=10)
        assert error["data"]["code"] == "INTERNAL_ERROR" and "removed or replaced" in error["data"]["message"]
        assert not [f for f in await ws.quiet(0.5) if f["type"] in ("ack", "message_received")]
        status, body, _ = await chatd.request("GET", "/readyz")
        assert status == 503 and body["store"].startswith("not writable: The database file was removed")
        assert (await chatd.request("GET", "/healthz"))[0] == 200  # alive, not ready: restart it
