"""The embedded store: SQLite through aiosqlite, WAL mode, versioned migrations, one thread hop per operation."""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import msgspec

from chatd.errors import Conflict, NotFound, StoreUnavailable
from chatd.models import Conversation, Id, Message, Usage, User
from chatd.store import Store, StoredEvent, StoredMessage, int_key, seq_bound, sql_rows, utcnow
from chatd.store.rows import Row

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
_CONV_COLS = "id, title, owner_id, assistant_id, created_at, updated_at, last_seq, last_message_id, deleted"

_usage_decoder = msgspec.json.Decoder(Usage)
_conversation_decoder = msgspec.json.Decoder(Conversation)
_encoder = msgspec.json.Encoder()

T = TypeVar("T")

#: SQLite's primary result codes that mean the file cannot be used right now (locked by another
#: process, disk full, I/O error, made read-only or removed), not that the statement is wrong.
_UNAVAILABLE_CODES = {sqlite3.SQLITE_BUSY: "locked by another connection", sqlite3.SQLITE_LOCKED: "locked",
                      sqlite3.SQLITE_FULL: "the disk is full", sqlite3.SQLITE_IOERR: "a disk I/O error",
                      sqlite3.SQLITE_READONLY: "read-only", sqlite3.SQLITE_CANTOPEN: "cannot be opened"}


async def _hop(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` on the connection's thread; an unusable file is StoreUnavailable."""
    try:
        return await conn._execute(fn, conn._conn)
    except sqlite3.OperationalError as e:
        if (unavailable := _unavailable(e)) is None:
            raise
        raise unavailable from e


#: Less free space than this on the database's filesystem makes the store not ready (/readyz 503).
MIN_FREE_BYTES = 1 << 20


def _unavailable(e: sqlite3.OperationalError) -> StoreUnavailable | None:
    """StoreUnavailable naming the cause when the file is unusable; None when the statement is wrong."""
    cause = _UNAVAILABLE_CODES.get(getattr(e, "sqlite_errorcode", 0) & 0xFF)
    if cause is None:
        return None
    return StoreUnavailable(f"The database is unavailable ({cause}); try again shortly")


def _message(row: tuple) -> Message:
    (mid, cid, seq, sender_id, mtype, content, status, cmid, reply_to, assistant_id, usage,
     finish_reason, owner, created_at) = row
    return Message(id=mid, conversation_id=cid, content=content, message_type=mtype, sender_id=sender_id,
                   created_at=created_at, status=status, seq=seq, client_msg_id=cmid, reply_to=reply_to,
                   assistant_id=assistant_id, usage=_usage_decoder.decode(usage) if usage is not None else None,
                   finish_reason=finish_reason, owner=owner if status == "streaming" else None)


def _conversation(row: tuple, members: list[Id], last_message: Message | None) -> Conversation:
    cid, title, owner_id, assistant_id, created_at, updated_at, last_seq, _last_id, deleted = row
    return Conversation(id=cid, title=title, owner_id=owner_id, member_ids=members, assistant_id=assistant_id,
                        created_at=created_at, updated_at=updated_at, seq=last_seq, last_message=last_message,
                        deleted=bool(deleted))


# The statements, as functions of a sqlite3 connection. Each store method runs one of them (a
# whole transaction, or a whole multi-statement read) in the connection's thread: one thread hop.

def _read_conversation(db: sqlite3.Connection, cid: Id, last_message: Message | None = None) -> Conversation | None:
    """The conversation row, its members and its last message (unless the caller has it)."""
    row = db.execute(f"SELECT {_CONV_COLS} FROM conversations WHERE id = ?", (cid,)).fetchone()
    if row is None:
        return None
    members = [r[0] for r in db.execute("SELECT user_id FROM members WHERE conversation_id = ? ORDER BY user_id",
                                        (cid,))]
    last_id = row[7]
    if last_id is None:
        last_message = None
    elif last_message is None or last_message.id != last_id:
        mrow = db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (last_id,)).fetchone()
        last_message = _message(mrow) if mrow is not None else None
    return _conversation(tuple(row), members, last_message)


def _next_seq(db: sqlite3.Connection, cid: Id) -> int:
    row = db.execute("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                     (cid,)).fetchone()
    if row is None:
        raise NotFound("Conversation not found")
    return int(row[0])


def _record_change(db: sqlite3.Connection, cid: Id) -> Conversation:
    _next_seq(db, cid)
    now = utcnow()
    db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, cid))
    conv = _read_conversation(db, cid)
    assert conv is not None
    db.execute("INSERT INTO conversation_events (conversation_id, seq, conversation, created_at) VALUES (?, ?, ?, ?)",
               (cid, conv.seq, _encoder.encode(conv).decode(), now))
    return conv


def _message_by_client_id(db: sqlite3.Connection, cid: Id, client_msg_id: str) -> Message | None:
    row = db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND client_msg_id = ?",
                     (cid, client_msg_id)).fetchone()
    return None if row is None else _message(row)


class SQLiteStore(Store):
    """SQLite store: a write connection (transactions in its thread, FIFO) and a read connection.

    WAL lets the read connection see the last committed state while a write is under way, so
    reads never wait for writes; every method is one hop to a connection's thread.
    """

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    @property
    def db(self) -> aiosqlite.Connection:
        """The write connection."""
        assert self._db is not None, "store is not open"
        return self._db

    async def _connect(self, query_only: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", f"synchronous={self.synchronous}", "foreign_keys=ON", "busy_timeout=5000"):
            await conn.execute(f"PRAGMA {pragma}")
        if query_only:
            await conn.execute("PRAGMA query_only=ON")
        return conn

    async def open(self) -> None:
        """Open the file (creating its folder), enable WAL, run pending migrations, open the reader."""
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)  # noqa: ASYNC240 (once, at start)
        self._db = await self._connect(query_only=False)
        if self.path != ":memory:":
            st = os.stat(self.path)  # noqa: ASYNC240 (once, at start)
            self._identity = (st.st_dev, st.st_ino)
        await self._write(self._migrate)
        # An in-memory database exists in its one connection only: it reads there too.
        self._reader = self._db if self.path == ":memory:" else await self._connect(query_only=True)

    async def close(self) -> None:
        """Close both connections (the last one out checkpoints the WAL)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not self._db:
            await reader.close()
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        """Run a trivial query."""
        return await self._read(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)

    # One hop per operation. aiosqlite has no public way to run several statements in one trip
    # to its thread; `_execute(fn)` is what its own public methods use to do exactly that.
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` as one BEGIN IMMEDIATE … COMMIT on the write connection (rolled back if it raises)."""
        def tx(db: sqlite3.Connection) -> T:
            self._check_file()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (disk full, busy) leaves the transaction open: end it, or
                # every later BEGIN on this connection fails too.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            return result

        return await _hop(self.db, tx)

    def _check_file(self) -> None:
        """StoreUnavailable when the database file is no longer the one opened (removed or replaced).

        SQLite goes on writing to an unlinked file without an error, so a removed data directory
        would ack messages that vanish at the next restart; one stat per write (in the store's
        thread) refuses them instead.
        """
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._identity:
            raise StoreUnavailable("The database file was removed or replaced while chatd ran; nothing more is "
                                   "stored until chatd is restarted with its data directory in place")

    async def write_problem(self) -> str | None:
        """Why a write would fail now: the file gone, the disk (nearly) full, or a probe commit failing."""
        def probe(db: sqlite3.Connection) -> None:
            if self.path != ":memory:":
                fs = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
                if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
                    raise StoreUnavailable("the disk is full")
            db.execute("UPDATE schema_version SET version = version WHERE version = "
                       "(SELECT MAX(version) FROM schema_version)")

        try:
            await self._write(probe)
        except StoreUnavailable as e:
            return e.message
        return None

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the read connection, in one read transaction (one committed snapshot)."""
        def snapshot(db: sqlite3.Connection) -> T:
            db.execute("BEGIN")
            try:
                return fn(db)
            finally:
                db.execute("COMMIT")

        assert self._reader is not None, "store is not open"
        return await _hop(self._reader, snapshot)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    async def migrations_applied(self) -> list[int]:
        """The schema versions recorded, in order."""
        return await self._read(lambda db: [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY 1")])

    # Users.
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> User:
        """Insert a user; Conflict if the name is taken."""
        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO users (username, password_hash, roles, created_at) VALUES (?, ?, ?, ?)",
                             (username, password_hash, json.dumps(roles or []), utcnow()))
            assert cur.lastrowid is not None
            return cur.lastrowid

        try:
            uid = await self._write(insert)
        except sqlite3.IntegrityError:
            raise Conflict(f"Username {username!r} is taken") from None
        return User(id=uid, username=username, roles=list(roles or []))

    async def get_user_by_name(self, username: str) -> User | None:
        """Look a user up by name, with the password hash."""
        row = await self._read(lambda db: db.execute(
            "SELECT id, username, roles, password_hash FROM users WHERE username = ?", (username,)).fetchone())
        return None if row is None else User(id=row[0], username=row[1], roles=json.loads(row[2]),
                                             password_hash=row[3])

    async def get_user(self, user_id: Id) -> User | None:
        """Look a user up by id."""
        if int_key(user_id) is None:
            return None
        row = await self._read(lambda db: db.execute("SELECT id, username, roles FROM users WHERE id = ?",
                                                     (user_id,)).fetchone())
        return None if row is None else User(id=row[0], username=row[1], roles=json.loads(row[2]))

    async def missing_users(self, user_ids: list[Id]) -> list[Id]:
        """One query for the whole list (a JSON array parameter: no limit on the number of ids)."""
        keys = sorted({k for k in map(int_key, user_ids) if k is not None})
        found: set[int] = set()
        if keys:
            rows = await self._read(lambda db: db.execute(
                "SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(keys),)).fetchall())
            found = {r[0] for r in rows}
        return [u for u in dict.fromkeys(user_ids) if int_key(u) not in found]

    # Conversations.
    async def create_conversation(self, owner_id: Id, title: str, assistant_id: str,
                                  member_ids: list[Id]) -> Conversation:
        """Insert the conversation and its members."""
        members = [owner_id] + [m for m in member_ids if m != owner_id]

        def insert(db: sqlite3.Connection) -> Conversation | None:
            now = utcnow()
            cur = db.execute("INSERT INTO conversations (title, owner_id, assistant_id, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?)", (title, owner_id, assistant_id, now, now))
            cid = cur.lastrowid
            assert cid is not None
            db.executemany("INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
                           [(cid, m) for m in dict.fromkeys(members)])
            return _read_conversation(db, cid)

        try:
            conv = await self._write(insert)
        except sqlite3.IntegrityError:
            raise NotFound("A member does not exist") from None
        assert conv is not None
        return conv

    async def get_conversation(self, conversation_id: Id) -> Conversation | None:
        """Read a conversation (deleted ones too)."""
        if int_key(conversation_id) is None:
            return None
        return await self._read(lambda db: _read_conversation(db, conversation_id))

    async def member_conversation(self, conversation_id: Id, user_id: Id) -> Conversation | None:
        """The conversation when the user is one of its members."""
        if int_key(conversation_id) is None:
            return None
        conv = await self._read(lambda db: _read_conversation(db, conversation_id))
        return conv if conv is not None and user_id in conv.member_ids else None

    async def is_member(self, conversation_id: Id, user_id: Id) -> bool:
        """Membership check by primary key."""
        if int_key(conversation_id) is None or int_key(user_id) is None:
            return False
        row = await self._read(lambda db: db.execute(
            "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)).fetchone())
        return row is not None

    async def list_conversations(self, user_id: Id, limit: int, before: str | None,
                                 before_id: Id | None = None) -> list[Conversation]:
        """Newest first by (updated_at, id), paged by the `before` (and `before_id`) cursor; three reads."""
        if int_key(user_id) is None:
            return []
        if before_id is not None and int_key(before_id) is None:
            before_id = None
        sql = (f"SELECT {', '.join('c.' + c for c in _CONV_COLS.split(', '))} FROM conversations c "
               "JOIN members m ON m.conversation_id = c.id WHERE m.user_id = ? AND c.deleted = 0")
        args: list[Any] = [user_id]
        if before and before_id is not None:
            sql += " AND (c.updated_at < ? OR (c.updated_at = ? AND c.id < ?))"
            args.extend([before, before, before_id])
        elif before:
            sql += " AND c.updated_at < ?"
            args.append(before)
        sql += " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?"
        args.append(limit)

        def read(db: sqlite3.Connection) -> list[Conversation]:
            rows = [tuple(r) for r in db.execute(sql, tuple(args))]
            if not rows:
                return []
            ids = tuple(r[0] for r in rows)
            members: dict[Id, list[Id]] = {}
            for cid, uid in db.execute(f"SELECT conversation_id, user_id FROM members WHERE conversation_id IN "
                                       f"({', '.join('?' * len(ids))}) ORDER BY conversation_id, user_id", ids):
                members.setdefault(cid, []).append(uid)
            last_ids = tuple(r[7] for r in rows if r[7] is not None)
            last: dict[Id, Message] = {}
            if last_ids:
                for mrow in db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id IN "
                                       f"({', '.join('?' * len(last_ids))})", last_ids):
                    m = _message(mrow)
                    last[m.id] = m
            return [_conversation(r, members.get(r[0], []), last.get(r[7]) if r[7] is not None else None)
                    for r in rows]

        return await self._read(read)

    async def update_conversation(self, conversation_id: Id, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Id] | None = None) -> Conversation:
        """Rename / change assistant / add members as one seq'd change."""
        if int_key(conversation_id) is None:
            raise NotFound("Conversation not found")
        def change(db: sqlite3.Connection) -> Conversation:
            if title is not None:
                db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            if assistant_id is not None:
                db.execute("UPDATE conversations SET assistant_id = ? WHERE id = ?", (assistant_id, conversation_id))
            if add_member_ids:
                db.executemany("INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
                               [(conversation_id, m) for m in add_member_ids])
            return _record_change(db, conversation_id)

        try:
            return await self._write(change)
        except sqlite3.IntegrityError:
            raise NotFound("A member does not exist") from None

    async def delete_conversation(self, conversation_id: Id) -> Conversation:
        """Soft-delete (members keep seeing NOT_FOUND rather than FORBIDDEN)."""
        if int_key(conversation_id) is None:
            raise NotFound("Conversation not found")
        def delete(db: sqlite3.Connection) -> Conversation:
            db.execute("UPDATE conversations SET deleted = 1 WHERE id = ?", (conversation_id,))
            return _record_change(db, conversation_id)

        return await self._write(delete)

    # Messages.
    async def find_by_client_msg_id(self, conversation_id: Id, client_msg_id: str) -> Message | None:
        """The earlier message with this client_msg_id."""
        if int_key(conversation_id) is None:
            return None
        return await self._read(lambda db: _message_by_client_id(db, conversation_id, client_msg_id))

    async def add_message(self, conversation_id: Id, sender_id: Id | None, content: str, message_type: str,
                          client_msg_id: str | None = None) -> StoredMessage:
        """Insert with the next seq; the unique index turns a resend into the original."""
        if int_key(conversation_id) is None:
            raise NotFound("Conversation not found")
        def insert(db: sqlite3.Connection) -> StoredMessage:
            if client_msg_id is not None:
                earlier = _message_by_client_id(db, conversation_id, client_msg_id)
                if earlier is not None:
                    return StoredMessage(earlier, False, None)
            seq = _next_seq(db, conversation_id)
            now = utcnow()
            row = db.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, client_msg_id, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'complete', ?, ?, ?) RETURNING " + _MSG_COLS,
                (conversation_id, seq, sender_id, message_type, content, client_msg_id, now, now)).fetchone()
            msg = _message(row)
            db.execute("UPDATE conversations SET updated_at = ?, last_message_id = ? WHERE id = ?",
                       (now, msg.id, conversation_id))
            return StoredMessage(msg, True, _read_conversation(db, conversation_id, last_message=msg))

        return await self._write(insert)

    async def get_message(self, message_id: Id) -> Message | None:
        """One message by id."""
        if int_key(message_id) is None:
            return None
        row = await self._read(lambda db: db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?",
                                                     (message_id,)).fetchone())
        return None if row is None else _message(row)

    async def create_reply(self, conversation_id: Id, reply_to: Id, assistant_id: str, owner: str) -> Message:
        """A streaming placeholder; it gets its seq in finish_reply."""
        def insert(db: sqlite3.Connection) -> Message:
            now = utcnow()
            return _message(db.execute(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, reply_to, "
                "assistant_id, owner, created_at, updated_at) "
                "VALUES (?, NULL, NULL, 'assistant', '', 'streaming', ?, ?, ?, ?, ?) RETURNING " + _MSG_COLS,
                (conversation_id, reply_to, assistant_id, owner, now, now)).fetchone())

        return await self._write(insert)

    async def checkpoint_reply(self, message_id: Id, content: str) -> None:
        """Save the text so far (only while still streaming)."""
        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'streaming'",
                       (content, utcnow(), message_id))

        await self._write(update)

    async def finish_reply(self, message_id: Id, content: str, status: str,
                           usage: Usage | None, finish_reason: str) -> tuple[Message, Conversation | None]:
        """Final text and status, and the next seq of the conversation."""
        usage_json = _encoder.encode(usage).decode() if usage is not None else None

        def finish(db: sqlite3.Connection) -> tuple[Message, Conversation | None]:
            row = db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFound("Message not found")
            old = _message(row)
            if old.status != "streaming":  # finished already (e.g. by a sweep): keep it
                return old, None
            cid = old.conversation_id
            seq = _next_seq(db, cid)
            now = utcnow()
            msg = _message(db.execute(
                "UPDATE messages SET content = ?, status = ?, usage = ?, finish_reason = ?, seq = ?, owner = NULL, "
                "updated_at = ? WHERE id = ? RETURNING " + _MSG_COLS,
                (content, status, usage_json, finish_reason, seq, now, message_id)).fetchone())
            db.execute("UPDATE conversations SET updated_at = ?, last_message_id = ? WHERE id = ?",
                       (now, message_id, cid))
            return msg, _read_conversation(db, cid, last_message=msg)

        return await self._write(finish)

    async def list_messages(self, conversation_id: Id, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[Message]:
        """Newest `limit` in the window, oldest first; in-flight replies follow when no before_seq."""
        before_seq = None if before_seq is None else seq_bound(before_seq)
        after_seq = None if after_seq is None else seq_bound(after_seq)
        limit = seq_bound(limit)
        if int_key(conversation_id) is None:
            return []
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

        def read(db: sqlite3.Connection) -> list[Message]:
            messages = [_message(r) for r in reversed(db.execute(sql, tuple(args)).fetchall())]
            if before_seq is None:
                messages.extend(_message(r) for r in db.execute(
                    f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND seq IS NULL ORDER BY id",
                    (conversation_id,)))
            return messages

        return await self._read(read)

    async def history(self, conversation_id: Id, upto_message_id: Id, limit: int) -> list[Message]:
        """Settled messages created up to one message, oldest first."""
        rows = await self._read(lambda db: db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND id <= ? AND seq IS NOT NULL "
            "AND content != '' ORDER BY id DESC LIMIT ?", (conversation_id, upto_message_id, limit)).fetchall())
        return [_message(r) for r in reversed(rows)]

    async def events_since(self, conversation_id: Id, since_seq: int) -> list[StoredEvent]:
        """Messages and conversation changes with seq > since_seq, merged in seq order."""
        since_seq = seq_bound(since_seq)
        if int_key(conversation_id) is None:
            return []
        # Both tables in one read transaction: a commit between them could otherwise yield change
        # N+1 without message N, and the replay would skip N for good.
        def read(db: sqlite3.Connection) -> tuple[list, list]:
            return (db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq",
                               (conversation_id, since_seq)).fetchall(),
                    db.execute("SELECT seq, conversation FROM conversation_events "
                               "WHERE conversation_id = ? AND seq > ? ORDER BY seq",
                               (conversation_id, since_seq)).fetchall())

        message_rows, change_rows = await self._read(read)
        events = [StoredEvent(msg.seq, msg) for msg in map(_message, message_rows) if msg.seq is not None]
        events.extend(StoredEvent(seq, _conversation_decoder.decode(conv)) for seq, conv in change_rows)
        events.sort(key=lambda e: e.seq)
        return events

    async def streaming_replies(self) -> list[Message]:
        """Replies still streaming, for the crash sweep."""
        rows = await self._read(lambda db: db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE status = 'streaming'").fetchall())
        return [_message(r) for r in rows]

    # Whole-store rows, for `chatd store copy`.
    async def count_rows(self, kind: str) -> int:
        """How many rows of a kind."""
        return int(await self._read(lambda db: db.execute(sql_rows.count_query(kind)).fetchone()[0]))

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        return await self._read(lambda db: db.execute(query, params).fetchall())

    def export_rows(self, kind: str, batch: int) -> AsyncIterator[list[Row]]:
        """Every row of a kind in key order, `batch` at a time."""
        return sql_rows.export_pages(kind, batch, self._fetch)

    async def import_rows(self, kind: str, rows: list[Row]) -> None:
        """Insert copied rows as they are, in one transaction."""
        def insert(db: sqlite3.Connection) -> None:
            db.executemany(sql_rows.insert_query(kind), [sql_rows.values(kind, r) for r in rows])
            db.executemany(sql_rows.MEMBERS_INSERT, sql_rows.member_values(rows))

        await self._write(insert)

    async def finish_import(self) -> None:
        """Nothing to do: SQLite gives the next rowid past the largest."""

    def id_for_copy(self, kind: str, source_id: Id, ordinal: int) -> Id:
        """Integer ids are kept; others become the row's place in the source's order."""
        return sql_rows.keep_int_id(source_id, ordinal)
