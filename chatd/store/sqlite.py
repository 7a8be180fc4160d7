"""The embedded store: SQLite through aiosqlite, WAL mode, versioned migrations."""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from typing import Any

import aiosqlite

from chatd.errors import Conflict, NotFound
from chatd.store import StoredEvent, Store, utcnow

MIGRATIONS: list[str] = [
    # 1: the first schema; seq and client_msg_id are there from the start (PROTOCOL.md §6).
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        roles TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    );
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        owner_id INTEGER NOT NULL REFERENCES users(id),
        assistant_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        last_message_id INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX conversations_updated ON conversations(updated_at);
    CREATE TABLE members (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        user_id INTEGER NOT NULL REFERENCES users(id),
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX members_user ON members(user_id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq INTEGER,
        sender_id INTEGER,
        message_type TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        client_msg_id TEXT,
        reply_to INTEGER,
        assistant_id TEXT,
        usage TEXT,
        finish_reason TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (conversation_id, client_msg_id),
        UNIQUE (conversation_id, seq)
    );
    CREATE INDEX messages_status ON messages(status) WHERE status = 'streaming';
    CREATE TABLE conversation_events (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq INTEGER NOT NULL,
        conversation TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    );
    """,
]

_MSG_COLS = ("id, conversation_id, seq, sender_id, message_type, content, status, client_msg_id, "
             "reply_to, assistant_id, usage, finish_reason, owner, created_at")


def _message(row: sqlite3.Row | tuple) -> dict:
    (mid, cid, seq, sender_id, mtype, content, status, cmid, reply_to, assistant_id, usage,
     finish_reason, owner, created_at) = row
    msg: dict[str, Any] = {
        "id": mid,
        "conversation_id": cid,
        "content": content,
        "message_type": mtype,
        "sender_id": sender_id,
        "created_at": created_at,
        "status": status,
        "seq": seq,
    }
    if cmid is not None:
        msg["client_msg_id"] = cmid
    if reply_to is not None:
        msg["reply_to"] = reply_to
    if assistant_id is not None:
        msg["assistant_id"] = assistant_id
    if usage is not None:
        msg["usage"] = json.loads(usage)
    if finish_reason is not None:
        msg["finish_reason"] = finish_reason
    if owner is not None and status == "streaming":
        msg["owner"] = owner
    return msg


class SQLiteStore(Store):
    """SQLite store; one connection, writes serialised and wrapped in BEGIN IMMEDIATE."""

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        assert self._db is not None, "store is not open"
        return self._db

    async def open(self) -> None:
        """Open the file (creating its folder), enable WAL and run pending migrations."""
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        await self.db.execute("PRAGMA foreign_keys=ON")
        await self.db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def _migrate(self) -> None:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                await self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                cur = await self.db.execute("SELECT MAX(version) FROM schema_version")
                current = (await cur.fetchone())[0] or 0
                for version, script in enumerate(MIGRATIONS, start=1):
                    if version <= current:
                        continue
                    for statement in script.split(";"):
                        if statement.strip():
                            await self.db.execute(statement)
                    await self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        """Checkpoint the WAL and close."""
        if self._db is not None:
            async with self._write_lock:
                await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        """Run a trivial query."""
        cur = await self.db.execute("SELECT 1")
        return (await cur.fetchone())[0] == 1

    # Reads share the one connection with the write transactions, so they wait for the write
    # lock: otherwise a read in the middle of a BEGIN IMMEDIATE … COMMIT sees its uncommitted rows
    # (a conversation's new last_seq before the event that carries it exists). Never call these
    # inside `_tx()` (the lock is not re-entrant).
    async def _fetchone(self, sql: str, args: tuple = ()) -> Any:
        async with self._write_lock:
            cur = await self.db.execute(sql, args)
            return await cur.fetchone()

    async def _fetchall(self, sql: str, args: tuple = ()) -> list:
        async with self._write_lock:
            cur = await self.db.execute(sql, args)
            return list(await cur.fetchall())

    class _Tx:
        """`async with store._tx():` — one serialised BEGIN IMMEDIATE … COMMIT."""

        def __init__(self, store: "SQLiteStore") -> None:
            self.store = store

        async def __aenter__(self) -> aiosqlite.Connection:
            await self.store._write_lock.acquire()
            try:
                await self.store.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._write_lock.release()
                raise
            return self.store.db

        async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                await self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._write_lock.release()

    def _tx(self) -> "SQLiteStore._Tx":
        return SQLiteStore._Tx(self)

    # Users.
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> dict:
        """Insert a user; Conflict if the name is taken."""
        try:
            async with self._tx() as db:
                cur = await db.execute(
                    "INSERT INTO users (username, password_hash, roles, created_at) VALUES (?, ?, ?, ?)",
                    (username, password_hash, json.dumps(roles or []), utcnow()),
                )
                uid = cur.lastrowid
        except sqlite3.IntegrityError:
            raise Conflict(f"Username {username!r} is taken") from None
        return {"id": uid, "username": username, "roles": list(roles or [])}

    async def get_user_by_name(self, username: str) -> dict | None:
        """Look a user up by name, with the password hash."""
        row = await self._fetchone("SELECT id, username, roles, password_hash FROM users WHERE username = ?", (username,))
        if row is None:
            return None
        return {"id": row[0], "username": row[1], "roles": json.loads(row[2]), "password_hash": row[3]}

    async def get_user(self, user_id: Any) -> dict | None:
        """Look a user up by id."""
        if not isinstance(user_id, int):
            return None
        row = await self._fetchone("SELECT id, username, roles FROM users WHERE id = ?", (user_id,))
        return None if row is None else {"id": row[0], "username": row[1], "roles": json.loads(row[2])}

    # Conversations.
    async def _conversation(self, db: aiosqlite.Connection, cid: Any) -> dict | None:
        cur = await db.execute(
            "SELECT id, title, owner_id, assistant_id, created_at, updated_at, last_seq, last_message_id, deleted "
            "FROM conversations WHERE id = ?", (cid,))
        row = await cur.fetchone()
        if row is None:
            return None
        cur = await db.execute("SELECT user_id FROM members WHERE conversation_id = ? ORDER BY user_id", (cid,))
        members = [r[0] for r in await cur.fetchall()]
        conv: dict[str, Any] = {
            "id": row[0], "title": row[1], "owner_id": row[2], "member_ids": members,
            "assistant_id": row[3], "created_at": row[4], "updated_at": row[5], "seq": row[6],
        }
        if row[7] is not None:
            cur = await db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (row[7],))
            mrow = await cur.fetchone()
            if mrow is not None:
                conv["last_message"] = _message(mrow)
        if row[8]:
            conv["deleted"] = True
        return conv

    async def create_conversation(self, owner_id: Any, title: str, assistant_id: str, member_ids: list[Any]) -> dict:
        """Insert the conversation and its members."""
        now = utcnow()
        members = [owner_id] + [m for m in member_ids if m != owner_id]
        try:
            async with self._tx() as db:
                cur = await db.execute(
                    "INSERT INTO conversations (title, owner_id, assistant_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (title, owner_id, assistant_id, now, now))
                cid = cur.lastrowid
                await db.executemany("INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
                                     [(cid, m) for m in dict.fromkeys(members)])
                conv = await self._conversation(db, cid)
        except sqlite3.IntegrityError:
            raise NotFound("A member does not exist") from None
        assert conv is not None
        return conv

    async def get_conversation(self, conversation_id: Any) -> dict | None:
        """Read a conversation (deleted ones too)."""
        if not isinstance(conversation_id, int):
            return None
        async with self._write_lock:  # committed state only (see _fetchone)
            return await self._conversation(self.db, conversation_id)

    async def is_member(self, conversation_id: Any, user_id: Any) -> bool:
        """Membership check by primary key."""
        if not isinstance(conversation_id, int):
            return False
        row = await self._fetchone("SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?",
                                   (conversation_id, user_id))
        return row is not None

    async def list_conversations(self, user_id: Any, limit: int, before: str | None,
                                 before_id: Any = None) -> list[dict]:
        """Newest first by (updated_at, id), paged by the `before` (and `before_id`) cursor."""
        sql = ("SELECT c.id FROM conversations c JOIN members m ON m.conversation_id = c.id "
               "WHERE m.user_id = ? AND c.deleted = 0")
        args: list[Any] = [user_id]
        if before and before_id is not None:
            sql += " AND (c.updated_at < ? OR (c.updated_at = ? AND c.id < ?))"
            args.extend([before, before, before_id])
        elif before:
            sql += " AND c.updated_at < ?"
            args.append(before)
        sql += " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?"
        args.append(limit)
        ids = [r[0] for r in await self._fetchall(sql, tuple(args))]
        out = []
        for cid in ids:
            async with self._write_lock:  # committed state only (see _fetchone)
                conv = await self._conversation(self.db, cid)
            if conv is not None:
                out.append(conv)
        return out

    async def _next_seq(self, db: aiosqlite.Connection, cid: Any) -> int:
        cur = await db.execute("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (cid,))
        row = await cur.fetchone()
        if row is None:
            raise NotFound("Conversation not found")
        return row[0]

    async def _record_change(self, db: aiosqlite.Connection, cid: Any) -> tuple[dict, int]:
        seq = await self._next_seq(db, cid)
        await db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (utcnow(), cid))
        conv = await self._conversation(db, cid)
        assert conv is not None
        conv["seq"] = seq
        await db.execute("INSERT INTO conversation_events (conversation_id, seq, conversation, created_at) VALUES (?, ?, ?, ?)",
                         (cid, seq, json.dumps(conv), utcnow()))
        return conv, seq

    async def update_conversation(self, conversation_id: Any, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Any] | None = None) -> tuple[dict, int]:
        """Rename / change assistant / add members as one seq'd change."""
        try:
            async with self._tx() as db:
                if title is not None:
                    await db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
                if assistant_id is not None:
                    await db.execute("UPDATE conversations SET assistant_id = ? WHERE id = ?", (assistant_id, conversation_id))
                if add_member_ids:
                    await db.executemany("INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
                                         [(conversation_id, m) for m in add_member_ids])
                return await self._record_change(db, conversation_id)
        except sqlite3.IntegrityError:
            raise NotFound("A member does not exist") from None

    async def delete_conversation(self, conversation_id: Any) -> tuple[dict, int]:
        """Soft-delete (members keep seeing NOT_FOUND rather than FORBIDDEN)."""
        async with self._tx() as db:
            await db.execute("UPDATE conversations SET deleted = 1 WHERE id = ?", (conversation_id,))
            return await self._record_change(db, conversation_id)

    # Messages.
    async def find_by_client_msg_id(self, conversation_id: Any, client_msg_id: str) -> dict | None:
        """The earlier message with this client_msg_id."""
        row = await self._fetchone(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND client_msg_id = ?",
                                   (conversation_id, client_msg_id))
        return None if row is None else _message(row)

    async def add_message(self, conversation_id: Any, sender_id: Any, content: str, message_type: str,
                          client_msg_id: str | None = None) -> tuple[dict, bool]:
        """Insert with the next seq; the unique index turns a resend into the original."""
        async with self._tx() as db:
            if client_msg_id is not None:
                cur = await db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND client_msg_id = ?",
                                       (conversation_id, client_msg_id))
                row = await cur.fetchone()
                if row is not None:
                    return _message(row), False
            seq = await self._next_seq(db, conversation_id)
            now = utcnow()
            cur = await db.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, client_msg_id, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'complete', ?, ?, ?) RETURNING " + _MSG_COLS,
                (conversation_id, seq, sender_id, message_type, content, client_msg_id, now, now))
            msg = _message(await cur.fetchone())
            await db.execute("UPDATE conversations SET updated_at = ?, last_message_id = ? WHERE id = ?",
                             (now, msg["id"], conversation_id))
            return msg, True

    async def get_message(self, message_id: Any) -> dict | None:
        """One message by id."""
        if not isinstance(message_id, int):
            return None
        row = await self._fetchone(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (message_id,))
        return None if row is None else _message(row)

    async def create_reply(self, conversation_id: Any, reply_to: Any, assistant_id: str, owner: str) -> dict:
        """A streaming placeholder; it gets its seq in finish_reply."""
        now = utcnow()
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, reply_to, "
                "assistant_id, owner, created_at, updated_at) VALUES (?, NULL, NULL, 'assistant', '', 'streaming', ?, ?, ?, ?, ?) "
                "RETURNING " + _MSG_COLS,
                (conversation_id, reply_to, assistant_id, owner, now, now))
            return _message(await cur.fetchone())

    async def checkpoint_reply(self, message_id: Any, content: str) -> None:
        """Save the text so far (only while still streaming)."""
        async with self._tx() as db:
            await db.execute("UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'streaming'",
                             (content, utcnow(), message_id))

    async def finish_reply(self, message_id: Any, content: str, status: str,
                           usage: dict | None, finish_reason: str) -> dict:
        """Final text and status, and the next seq of the conversation."""
        async with self._tx() as db:
            cur = await db.execute("SELECT conversation_id, status, seq FROM messages WHERE id = ?", (message_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound("Message not found")
            cid, old_status, old_seq = row
            if old_status != "streaming":  # finished already (e.g. by a sweep): keep it
                cur = await db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (message_id,))
                return _message(await cur.fetchone())
            seq = await self._next_seq(db, cid)
            now = utcnow()
            cur = await db.execute(
                "UPDATE messages SET content = ?, status = ?, usage = ?, finish_reason = ?, seq = ?, owner = NULL, "
                "updated_at = ? WHERE id = ? RETURNING " + _MSG_COLS,
                (content, status, json.dumps(usage) if usage is not None else None, finish_reason, seq, now, message_id))
            msg = _message(await cur.fetchone())
            await db.execute("UPDATE conversations SET updated_at = ?, last_message_id = ? WHERE id = ?",
                             (now, message_id, cid))
            return msg

    async def list_messages(self, conversation_id: Any, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[dict]:
        """Newest `limit` in the window, oldest first; in-flight replies follow when no before_seq."""
        sql = f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND seq IS NOT NULL"
        args: list[Any] = [conversation_id]
        if before_seq is not None:
            sql += " AND seq < ?"
            args.append(before_seq)
        if after_seq is not None:
            sql += " AND seq > ?"
            args.append(after_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        rows = await self._fetchall(sql, tuple(args))
        messages = [_message(r) for r in reversed(rows)]
        if before_seq is None:
            streaming = await self._fetchall(
                f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND seq IS NULL ORDER BY id",
                (conversation_id,))
            messages.extend(_message(r) for r in streaming)
        return messages

    async def history(self, conversation_id: Any, upto_message_id: Any, limit: int) -> list[dict]:
        """Settled messages created up to one message, oldest first."""
        rows = await self._fetchall(
            f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND id <= ? AND seq IS NOT NULL "
            "AND content != '' ORDER BY id DESC LIMIT ?", (conversation_id, upto_message_id, limit))
        return [_message(r) for r in reversed(rows)]

    async def events_since(self, conversation_id: Any, since_seq: int) -> list[StoredEvent]:
        """Messages and conversation changes with seq > since_seq, merged in seq order."""
        events: list[StoredEvent] = []
        # Both tables in one read (under the write lock): a commit between them could otherwise
        # yield change N+1 without message N, and the replay would skip N for good.
        async with self._write_lock:
            cur = await self.db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq",
                (conversation_id, since_seq))
            message_rows = list(await cur.fetchall())
            cur = await self.db.execute(
                "SELECT seq, conversation FROM conversation_events WHERE conversation_id = ? AND seq > ? ORDER BY seq",
                (conversation_id, since_seq))
            change_rows = list(await cur.fetchall())
        for row in message_rows:
            msg = _message(row)
            ftype = "message_added" if msg["message_type"] == "assistant" and msg.get("reply_to") is not None \
                else "message_received"
            events.append(StoredEvent(msg["seq"], ftype, {"message": msg, "seq": msg["seq"]}))
        for seq, conv in change_rows:
            events.append(StoredEvent(seq, "conversation_updated", {"conversation": json.loads(conv), "seq": seq}))
        events.sort(key=lambda e: e.seq)
        return events

    async def streaming_replies(self) -> list[dict]:
        """Replies still streaming, for the crash sweep."""
        rows = await self._fetchall(f"SELECT {_MSG_COLS} FROM messages WHERE status = 'streaming'")
        return [_message(r) for r in rows]
