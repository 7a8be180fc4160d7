"""The PostgreSQL store: asyncpg with its pool, versioned migrations, seq taken under the conversation's row lock."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import msgspec

from chatd.errors import Conflict, NotFound, StoreUnavailable
from chatd.models import Conversation, Id, Message, Usage, User
from chatd.store import Store, StoredEvent, StoredMessage, int_key, seq_bound, sql_rows, utcnow
from chatd.store.rows import Row

#: Serialises migrations when several processes start at once (pg_advisory_xact_lock key).
MIGRATION_LOCK = 0x63686174  # "chat"

MIGRATIONS: list[str] = [
    # 1: the same schema as the SQLite store's first migration; timestamps stay ISO 8601 text so
    # every store sorts and returns them identically.
    """
    CREATE TABLE users (
        id BIGSERIAL PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        roles TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    );
    CREATE TABLE conversations (
        id BIGSERIAL PRIMARY KEY,
        title TEXT NOT NULL,
        owner_id BIGINT NOT NULL REFERENCES users(id),
        assistant_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_seq BIGINT NOT NULL DEFAULT 0,
        last_message_id BIGINT,
        deleted BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX conversations_updated ON conversations(updated_at);
    CREATE TABLE members (
        conversation_id BIGINT NOT NULL REFERENCES conversations(id),
        user_id BIGINT NOT NULL REFERENCES users(id),
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX members_user ON members(user_id);
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        conversation_id BIGINT NOT NULL REFERENCES conversations(id),
        seq BIGINT,
        sender_id BIGINT,
        message_type TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        client_msg_id TEXT,
        reply_to BIGINT,
        assistant_id TEXT,
        usage TEXT,
        finish_reason TEXT,
        owner TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (conversation_id, client_msg_id),
        UNIQUE (conversation_id, seq)
    );
    CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';
    CREATE TABLE conversation_events (
        conversation_id BIGINT NOT NULL REFERENCES conversations(id),
        seq BIGINT NOT NULL,
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

#: What a lost or restarting server looks like to asyncpg: the operation fails, the pool replaces the connection.
_UNAVAILABLE = (OSError, asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
                asyncpg.exceptions.ConnectionFailureError, asyncpg.exceptions.InternalClientError, TimeoutError)


def _message(row: asyncpg.Record) -> Message:
    usage = row["usage"]
    return Message(id=row["id"], conversation_id=row["conversation_id"], content=row["content"],
                   message_type=row["message_type"], sender_id=row["sender_id"], created_at=row["created_at"],
                   status=row["status"], seq=row["seq"], client_msg_id=row["client_msg_id"],
                   reply_to=row["reply_to"], assistant_id=row["assistant_id"],
                   usage=_usage_decoder.decode(usage) if usage is not None else None,
                   finish_reason=row["finish_reason"],
                   owner=row["owner"] if row["status"] == "streaming" else None)


def _conversation(row: asyncpg.Record, members: list[Id], last_message: Message | None) -> Conversation:
    return Conversation(id=row["id"], title=row["title"], owner_id=row["owner_id"], member_ids=members,
                        assistant_id=row["assistant_id"], created_at=row["created_at"],
                        updated_at=row["updated_at"], seq=row["last_seq"], last_message=last_message,
                        deleted=row["deleted"])


async def _read_conversation(db: asyncpg.Connection, cid: int,
                             last_message: Message | None = None) -> Conversation | None:
    """The conversation row, its members and its last message (unless the caller has it)."""
    row = await db.fetchrow(f"SELECT {_CONV_COLS} FROM conversations WHERE id = $1", cid)
    if row is None:
        return None
    members = [r[0] for r in await db.fetch(
        "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY user_id", cid)]
    last_id = row["last_message_id"]
    if last_id is None:
        last_message = None
    elif last_message is None or last_message.id != last_id:
        mrow = await db.fetchrow(f"SELECT {_MSG_COLS} FROM messages WHERE id = $1", last_id)
        last_message = _message(mrow) if mrow is not None else None
    return _conversation(row, members, last_message)


async def _lock_conversation(db: asyncpg.Connection, cid: int) -> None:
    """Take the conversation's row lock: its writers queue here, so seq is taken in commit order."""
    if await db.fetchval("SELECT id FROM conversations WHERE id = $1 FOR UPDATE", cid) is None:
        raise NotFound("Conversation not found")


async def _next_seq(db: asyncpg.Connection, cid: int) -> int:
    seq = await db.fetchval("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", cid)
    if seq is None:
        raise NotFound("Conversation not found")
    return int(seq)


async def _record_change(db: asyncpg.Connection, cid: int) -> Conversation:
    await _next_seq(db, cid)
    now = utcnow()
    await db.execute("UPDATE conversations SET updated_at = $1 WHERE id = $2", now, cid)
    conv = await _read_conversation(db, cid)
    assert conv is not None
    await db.execute("INSERT INTO conversation_events (conversation_id, seq, conversation, created_at) "
                     "VALUES ($1, $2, $3, $4)", cid, conv.seq, _encoder.encode(conv).decode(), now)
    return conv


async def _message_by_client_id(db: asyncpg.Connection, cid: int, client_msg_id: str) -> Message | None:
    row = await db.fetchrow(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = $1 AND client_msg_id = $2",
                            cid, client_msg_id)
    return None if row is None else _message(row)


async def _rollback_quietly(tx: asyncpg.transaction.Transaction) -> None:
    # On a lost connection the rollback fails too; the server has already rolled back.
    try:
        await tx.rollback()
    except _UNAVAILABLE:
        pass


class PostgresStore(Store):
    """PostgreSQL through an asyncpg pool; every write is one transaction on one pooled connection.

    A conversation's writers queue on its row lock (`SELECT … FOR UPDATE`), so seq has no gaps and
    no duplicates however many processes write. A lost server fails the operation with
    StoreUnavailable; the pool opens fresh connections once the server is back.
    """

    def __init__(self, url: str, pool_size: int = 10, command_timeout_s: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.command_timeout_s = command_timeout_s
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool."""
        assert self._pool is not None, "store is not open"
        return self._pool

    async def open(self) -> None:
        """Create the pool and run pending migrations (one process at a time)."""
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size,
                                                   command_timeout=self.command_timeout_s)
        except _UNAVAILABLE + (asyncpg.PostgresError,) as e:
            raise StoreUnavailable(f"PostgreSQL at the store_url is not reachable ({type(e).__name__}: {e})") from e
        await self._write(self._migrate)

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> bool:
        """Run a trivial query."""
        try:
            return bool(await self._read(lambda db: db.fetchval("SELECT 1")) == 1)
        except StoreUnavailable:
            return False

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction on a pooled connection (rolled back if it raises).

        A connection lost before COMMIT was sent wrote nothing (the server rolls the transaction
        back), so the write is tried once more on a fresh connection. A connection lost during
        COMMIT is not retried: the commit may have landed, and a repeat could write twice.
        """
        for attempt in (1, 2):
            committing = False
            try:
                async with self.pool.acquire() as db:
                    tx = db.transaction()
                    await tx.start()
                    try:
                        result = await fn(db)
                    except BaseException:
                        await _rollback_quietly(tx)
                        raise
                    committing = True
                    await tx.commit()
                    return result
            except _UNAVAILABLE as e:
                await self._drop_stale_connections()
                if attempt == 2 or committing or isinstance(e, TimeoutError):
                    raise StoreUnavailable("The database is unavailable; try again shortly") from e
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one repeatable-read, read-only transaction (one committed snapshot).

        A read that lost its connection (the server restarted, a pooled connection went stale)
        is tried once more on a fresh one: it changes nothing, so repeating it is safe.
        """
        for attempt in (1, 2):
            try:
                async with self.pool.acquire() as db, db.transaction(isolation="repeatable_read", readonly=True):
                    return await fn(db)
            except _UNAVAILABLE as e:
                await self._drop_stale_connections()
                if attempt == 2:
                    raise StoreUnavailable("The database is unavailable; try again shortly") from e
        raise AssertionError("unreachable")

    async def _drop_stale_connections(self) -> None:
        # A lost connection usually means the server restarted, which cut every pooled
        # connection; expiring them all makes the retry open a fresh one instead of
        # drawing the next dead connection from the pool.
        if self._pool is not None:
            await self._pool.expire_connections()

    @staticmethod
    async def _migrate(db: asyncpg.Connection) -> None:
        await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await db.execute(script)
            await db.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def migrations_applied(self) -> list[int]:
        """The schema versions recorded, in order."""
        return [r[0] for r in await self._read(lambda db: db.fetch("SELECT version FROM schema_version ORDER BY 1"))]

    # Users.
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> User:
        """Insert a user; Conflict if the name is taken."""
        async def insert(db: asyncpg.Connection) -> int:
            return int(await db.fetchval(
                "INSERT INTO users (username, password_hash, roles, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                username, password_hash, json.dumps(roles or []), utcnow()))

        try:
            uid = await self._write(insert)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"Username {username!r} is taken") from None
        return User(id=uid, username=username, roles=list(roles or []))

    async def get_user_by_name(self, username: str) -> User | None:
        """Look a user up by name, with the password hash."""
        row = await self._read(lambda db: db.fetchrow(
            "SELECT id, username, roles, password_hash FROM users WHERE username = $1", username))
        return None if row is None else User(id=row[0], username=row[1], roles=json.loads(row[2]),
                                             password_hash=row[3])

    async def get_user(self, user_id: Id) -> User | None:
        """Look a user up by id."""
        uid = int_key(user_id)
        if uid is None:
            return None
        row = await self._read(lambda db: db.fetchrow("SELECT id, username, roles FROM users WHERE id = $1", uid))
        return None if row is None else User(id=row[0], username=row[1], roles=json.loads(row[2]))

    async def missing_users(self, user_ids: list[Id]) -> list[Id]:
        """One query for the whole list."""
        keys = sorted({k for k in map(int_key, user_ids) if k is not None})
        found: set[int] = set()
        if keys:
            rows = await self._read(lambda db: db.fetch("SELECT id FROM users WHERE id = ANY($1::bigint[])", keys))
            found = {r[0] for r in rows}
        return [u for u in dict.fromkeys(user_ids) if int_key(u) not in found]

    # Conversations.
    async def create_conversation(self, owner_id: Id, title: str, assistant_id: str,
                                  member_ids: list[Id]) -> Conversation:
        """Insert the conversation and its members."""
        members = [owner_id] + [m for m in member_ids if m != owner_id]

        async def insert(db: asyncpg.Connection) -> Conversation | None:
            now = utcnow()
            cid = await db.fetchval("INSERT INTO conversations (title, owner_id, assistant_id, created_at, updated_at) "
                                    "VALUES ($1, $2, $3, $4, $5) RETURNING id", title, owner_id, assistant_id, now, now)
            await db.executemany("INSERT INTO members (conversation_id, user_id) VALUES ($1, $2) "
                                 "ON CONFLICT DO NOTHING", [(cid, m) for m in dict.fromkeys(members)])
            return await _read_conversation(db, cid)

        try:
            conv = await self._write(insert)
        except (asyncpg.ForeignKeyViolationError, asyncpg.DataError):
            raise NotFound("A member does not exist") from None
        assert conv is not None
        return conv

    async def get_conversation(self, conversation_id: Id) -> Conversation | None:
        """Read a conversation (deleted ones too)."""
        cid = int_key(conversation_id)
        if cid is None:
            return None
        return await self._read(lambda db: _read_conversation(db, cid))

    async def member_conversation(self, conversation_id: Id, user_id: Id) -> Conversation | None:
        """The conversation when the user is one of its members."""
        conv = await self.get_conversation(conversation_id)
        return conv if conv is not None and user_id in conv.member_ids else None

    async def is_member(self, conversation_id: Id, user_id: Id) -> bool:
        """Membership check by primary key."""
        cid, uid = int_key(conversation_id), int_key(user_id)
        if cid is None or uid is None:
            return False
        return await self._read(lambda db: db.fetchval(
            "SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2", cid, uid)) is not None

    async def list_conversations(self, user_id: Id, limit: int, before: str | None,
                                 before_id: Id | None = None) -> list[Conversation]:
        """Newest first by (updated_at, id), paged by the `before` (and `before_id`) cursor; three reads."""
        uid = int_key(user_id)
        if uid is None:
            return []
        sql = (f"SELECT {', '.join('c.' + c for c in _CONV_COLS.split(', '))} FROM conversations c "
               "JOIN members m ON m.conversation_id = c.id WHERE m.user_id = $1 AND NOT c.deleted")
        args: list[Any] = [uid]
        cursor_id = int_key(before_id) if before_id is not None else None
        if before and cursor_id is not None:
            sql += " AND (c.updated_at, c.id) < ($2, $3)"
            args.extend([before, cursor_id])
        elif before:
            sql += " AND c.updated_at < $2"
            args.append(before)
        sql += f" ORDER BY c.updated_at DESC, c.id DESC LIMIT ${len(args) + 1}"
        args.append(limit)

        async def read(db: asyncpg.Connection) -> list[Conversation]:
            rows = await db.fetch(sql, *args)
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            members: dict[Id, list[Id]] = {}
            for cid, member in await db.fetch("SELECT conversation_id, user_id FROM members WHERE conversation_id = "
                                              "ANY($1::bigint[]) ORDER BY conversation_id, user_id", ids):
                members.setdefault(cid, []).append(member)
            last_ids = [r["last_message_id"] for r in rows if r["last_message_id"] is not None]
            last: dict[Id, Message] = {}
            if last_ids:
                for mrow in await db.fetch(f"SELECT {_MSG_COLS} FROM messages WHERE id = ANY($1::bigint[])", last_ids):
                    m = _message(mrow)
                    last[m.id] = m
            return [_conversation(r, members.get(r["id"], []), last.get(r["last_message_id"])) for r in rows]

        return await self._read(read)

    async def update_conversation(self, conversation_id: Id, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Id] | None = None) -> Conversation:
        """Rename / change assistant / add members as one seq'd change."""
        cid = int_key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")

        async def change(db: asyncpg.Connection) -> Conversation:
            await _lock_conversation(db, cid)
            if title is not None:
                await db.execute("UPDATE conversations SET title = $1 WHERE id = $2", title, cid)
            if assistant_id is not None:
                await db.execute("UPDATE conversations SET assistant_id = $1 WHERE id = $2", assistant_id, cid)
            if add_member_ids:
                await db.executemany("INSERT INTO members (conversation_id, user_id) VALUES ($1, $2) "
                                     "ON CONFLICT DO NOTHING", [(cid, m) for m in add_member_ids])
            return await _record_change(db, cid)

        try:
            return await self._write(change)
        except (asyncpg.ForeignKeyViolationError, asyncpg.DataError):
            raise NotFound("A member does not exist") from None

    async def delete_conversation(self, conversation_id: Id) -> Conversation:
        """Soft-delete (members keep seeing NOT_FOUND rather than FORBIDDEN)."""
        cid = int_key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")

        async def delete(db: asyncpg.Connection) -> Conversation:
            await _lock_conversation(db, cid)
            await db.execute("UPDATE conversations SET deleted = TRUE WHERE id = $1", cid)
            return await _record_change(db, cid)

        return await self._write(delete)

    # Messages.
    async def find_by_client_msg_id(self, conversation_id: Id, client_msg_id: str) -> Message | None:
        """The earlier message with this client_msg_id."""
        cid = int_key(conversation_id)
        if cid is None:
            return None
        return await self._read(lambda db: _message_by_client_id(db, cid, client_msg_id))

    async def add_message(self, conversation_id: Id, sender_id: Id | None, content: str, message_type: str,
                          client_msg_id: str | None = None) -> StoredMessage:
        """Insert with the next seq; a resend (same client_msg_id) returns the original and takes no seq."""
        cid = int_key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")

        async def insert(db: asyncpg.Connection) -> StoredMessage:
            # The row lock first: a concurrent resend waits here, then finds the original.
            await _lock_conversation(db, cid)
            if client_msg_id is not None:
                earlier = await _message_by_client_id(db, cid, client_msg_id)
                if earlier is not None:
                    return StoredMessage(earlier, False, None)
            seq = await _next_seq(db, cid)
            now = utcnow()
            row = await db.fetchrow(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, client_msg_id, "
                "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'complete', $6, $7, $8) RETURNING " + _MSG_COLS,
                cid, seq, sender_id, message_type, content, client_msg_id, now, now)
            msg = _message(row)
            await db.execute("UPDATE conversations SET updated_at = $1, last_message_id = $2 WHERE id = $3",
                             now, msg.id, cid)
            return StoredMessage(msg, True, await _read_conversation(db, cid, last_message=msg))

        return await self._write(insert)

    async def get_message(self, message_id: Id) -> Message | None:
        """One message by id."""
        mid = int_key(message_id)
        if mid is None:
            return None
        row = await self._read(lambda db: db.fetchrow(f"SELECT {_MSG_COLS} FROM messages WHERE id = $1", mid))
        return None if row is None else _message(row)

    async def create_reply(self, conversation_id: Id, reply_to: Id, assistant_id: str, owner: str) -> Message:
        """A streaming placeholder; it gets its seq in finish_reply."""
        async def insert(db: asyncpg.Connection) -> Message:
            now = utcnow()
            return _message(await db.fetchrow(
                "INSERT INTO messages (conversation_id, seq, sender_id, message_type, content, status, reply_to, "
                "assistant_id, owner, created_at, updated_at) "
                "VALUES ($1, NULL, NULL, 'assistant', '', 'streaming', $2, $3, $4, $5, $6) RETURNING " + _MSG_COLS,
                conversation_id, reply_to, assistant_id, owner, now, now))

        return await self._write(insert)

    async def checkpoint_reply(self, message_id: Id, content: str) -> None:
        """Save the text so far (only while still streaming): one targeted UPDATE."""
        async def update(db: asyncpg.Connection) -> None:
            await db.execute("UPDATE messages SET content = $1, updated_at = $2 WHERE id = $3 AND status = 'streaming'",
                             content, utcnow(), message_id)

        await self._write(update)

    async def finish_reply(self, message_id: Id, content: str, status: str,
                           usage: Usage | None, finish_reason: str) -> tuple[Message, Conversation | None]:
        """Final text and status, and the next seq of the conversation."""
        usage_json = _encoder.encode(usage).decode() if usage is not None else None

        async def finish(db: asyncpg.Connection) -> tuple[Message, Conversation | None]:
            cid = await db.fetchval("SELECT conversation_id FROM messages WHERE id = $1", message_id)
            if cid is None:
                raise NotFound("Message not found")
            await _lock_conversation(db, cid)  # then the message: a sweep finishing it too waits here
            row = await db.fetchrow(f"SELECT {_MSG_COLS} FROM messages WHERE id = $1", message_id)
            old = _message(row)
            if old.status != "streaming":  # finished already (e.g. by a sweep): keep it
                return old, None
            seq = await _next_seq(db, cid)
            now = utcnow()
            msg = _message(await db.fetchrow(
                "UPDATE messages SET content = $1, status = $2, usage = $3, finish_reason = $4, seq = $5, "
                "owner = NULL, updated_at = $6 WHERE id = $7 RETURNING " + _MSG_COLS,
                content, status, usage_json, finish_reason, seq, now, message_id))
            await db.execute("UPDATE conversations SET updated_at = $1, last_message_id = $2 WHERE id = $3",
                             now, message_id, cid)
            return msg, await _read_conversation(db, cid, last_message=msg)

        return await self._write(finish)

    async def list_messages(self, conversation_id: Id, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[Message]:
        """Newest `limit` in the window, oldest first; in-flight replies follow when no before_seq."""
        before_seq = None if before_seq is None else seq_bound(before_seq)
        after_seq = None if after_seq is None else seq_bound(after_seq)
        limit = seq_bound(limit)
        cid = int_key(conversation_id)
        if cid is None:
            return []
        sql = f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq IS NOT NULL"
        args: list[Any] = [cid]
        if before_seq is not None:
            args.append(before_seq)
            sql += f" AND seq < ${len(args)}"
        if after_seq is not None:
            args.append(after_seq)
            sql += f" AND seq > ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY seq DESC LIMIT ${len(args)}"

        async def read(db: asyncpg.Connection) -> list[Message]:
            messages = [_message(r) for r in reversed(await db.fetch(sql, *args))]
            if before_seq is None:
                messages.extend(_message(r) for r in await db.fetch(
                    f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq IS NULL ORDER BY id", cid))
            return messages

        return await self._read(read)

    async def history(self, conversation_id: Id, upto_message_id: Id, limit: int) -> list[Message]:
        """Settled messages created up to one message, oldest first."""
        rows = await self._read(lambda db: db.fetch(
            f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = $1 AND id <= $2 AND seq IS NOT NULL "
            "AND content != '' ORDER BY id DESC LIMIT $3", conversation_id, upto_message_id, limit))
        return [_message(r) for r in reversed(rows)]

    async def events_since(self, conversation_id: Id, since_seq: int) -> list[StoredEvent]:
        """Messages and conversation changes with seq > since_seq, merged in seq order (one snapshot)."""
        since_seq = seq_bound(since_seq)
        cid = int_key(conversation_id)
        if cid is None:
            return []

        async def read(db: asyncpg.Connection) -> tuple[list, list]:
            return (await db.fetch(f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq > $2 "
                                   "ORDER BY seq", cid, since_seq),
                    await db.fetch("SELECT seq, conversation FROM conversation_events "
                                   "WHERE conversation_id = $1 AND seq > $2 ORDER BY seq", cid, since_seq))

        message_rows, change_rows = await self._read(read)
        events = [StoredEvent(msg.seq, msg) for msg in map(_message, message_rows) if msg.seq is not None]
        events.extend(StoredEvent(seq, _conversation_decoder.decode(conv)) for seq, conv in change_rows)
        events.sort(key=lambda e: e.seq)
        return events

    async def streaming_replies(self) -> list[Message]:
        """Replies still streaming, for the crash sweep."""
        rows = await self._read(lambda db: db.fetch(f"SELECT {_MSG_COLS} FROM messages WHERE status = 'streaming'"))
        return [_message(r) for r in rows]

    # Whole-store rows, for `chatd store copy`.
    async def count_rows(self, kind: str) -> int:
        """How many rows of a kind."""
        return int(await self._read(lambda db: db.fetchval(sql_rows.count_query(kind))))

    async def _fetch(self, query: str, params: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        return await self._read(lambda db: db.fetch(sql_rows.numbered(query), *params))

    def export_rows(self, kind: str, batch: int) -> AsyncIterator[list[Row]]:
        """Every row of a kind in key order, `batch` at a time."""
        return sql_rows.export_pages(kind, batch, self._fetch)

    async def import_rows(self, kind: str, rows: list[Row]) -> None:
        """Insert copied rows as they are, in one transaction."""
        async def insert(db: asyncpg.Connection) -> None:
            await db.executemany(sql_rows.numbered(sql_rows.insert_query(kind)),
                                 [sql_rows.values(kind, r) for r in rows])
            members = sql_rows.member_values(rows)
            if members:
                await db.executemany(sql_rows.numbered(sql_rows.MEMBERS_INSERT), members)

        await self._write(insert)

    async def finish_import(self) -> None:
        """Move each id sequence past the largest copied id, so new rows do not collide with copied ones."""
        async def advance(db: asyncpg.Connection) -> None:
            for table in ("users", "conversations", "messages"):
                await db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")

        await self._write(advance)

    def id_for_copy(self, kind: str, source_id: Id, ordinal: int) -> Id:
        """Integer ids are kept; others become the row's place in the source's order."""
        return sql_rows.keep_int_id(source_id, ordinal)
