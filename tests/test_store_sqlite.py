"""What only the embedded SQLite store does: a WAL file with its migrations, the secret file on disk.

The guarantees every store keeps (seq, client_msg_id, checkpoints, paging) are in tests/store/.
"""
from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from chatd.store.sqlite import MIGRATIONS, SQLiteStore

pytestmark = pytest.mark.asyncio


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
