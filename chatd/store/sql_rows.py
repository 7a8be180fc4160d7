"""The SQL stores' rows for `chatd store copy`: one query and one conversion per kind, for SQLite and PostgreSQL.

Queries use `?` placeholders; PostgreSQL's `$n` come from `numbered()`.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec

from chatd.models import Conversation, Id, Usage
from chatd.store.rows import ConversationRow, EventRow, MessageRow, Row, UserRow

_usage = msgspec.json.Decoder(Usage)
_conversation = msgspec.json.Decoder(Conversation)
_encoder = msgspec.json.Encoder()

_COLUMNS = {
    "users": "id, username, password_hash, roles, created_at",
    "conversations": "id, title, owner_id, assistant_id, created_at, updated_at, last_seq, last_message_id, deleted",
    "messages": ("id, conversation_id, seq, sender_id, message_type, content, status, client_msg_id, reply_to, "
                 "assistant_id, usage, finish_reason, owner, created_at, updated_at"),
    "events": "conversation_id, seq, conversation, created_at",
}
_TABLES = {"users": "users", "conversations": "conversations", "messages": "messages",
           "events": "conversation_events"}


def count_query(kind: str) -> str:
    """How many rows of a kind."""
    return f"SELECT COUNT(*) FROM {_TABLES[kind]}"


def page_query(kind: str, first: bool) -> str:
    """One page in key order: after the last key (id, or conversation and seq for events) unless `first`."""
    where = "" if first else (" WHERE (conversation_id, seq) > (?, ?)" if kind == "events" else " WHERE id > ?")
    order = "conversation_id, seq" if kind == "events" else "id"
    return f"SELECT {_COLUMNS[kind]} FROM {_TABLES[kind]}{where} ORDER BY {order} LIMIT ?"


def page_key(kind: str, record: Sequence[Any]) -> tuple[Any, ...]:
    """The key the next page starts after."""
    return (record[0], record[1]) if kind == "events" else (record[0],)


def members_query(count: int) -> str:
    """The members of `count` conversations."""
    return (f"SELECT conversation_id, user_id FROM members WHERE conversation_id IN ({', '.join('?' * count)}) "
            "ORDER BY conversation_id, user_id")


def insert_query(kind: str) -> str:
    """Insert one row as it is."""
    columns = _COLUMNS[kind]
    return f"INSERT INTO {_TABLES[kind]} ({columns}) VALUES ({', '.join('?' * (columns.count(',') + 1))})"


MEMBERS_INSERT = "INSERT INTO members (conversation_id, user_id) VALUES (?, ?)"


def numbered(query: str) -> str:
    """The query with PostgreSQL's `$1, $2, …` for its `?` placeholders."""
    counter = iter(range(1, query.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", query)


def row(kind: str, r: Sequence[Any], members: dict[Id, list[Id]]) -> Row:
    """A record of a page as its row."""
    if kind == "users":
        return UserRow(id=r[0], username=r[1], password_hash=r[2], roles=json.loads(r[3]), created_at=r[4])
    if kind == "conversations":
        return ConversationRow(id=r[0], title=r[1], owner_id=r[2], assistant_id=r[3], created_at=r[4],
                               updated_at=r[5], last_seq=r[6], last_message_id=r[7], deleted=bool(r[8]),
                               member_ids=members.get(r[0], []))
    if kind == "messages":
        return MessageRow(id=r[0], conversation_id=r[1], seq=r[2], sender_id=r[3], message_type=r[4], content=r[5],
                          status=r[6], client_msg_id=r[7], reply_to=r[8], assistant_id=r[9],
                          usage=None if r[10] is None else _usage.decode(r[10]), finish_reason=r[11], owner=r[12],
                          created_at=r[13], updated_at=r[14])
    return EventRow(conversation_id=r[0], seq=r[1], conversation=_conversation.decode(r[2]), created_at=r[3])


def values(kind: str, r: Row) -> tuple[Any, ...]:
    """A row as the values of its insert."""
    if isinstance(r, UserRow):
        return (r.id, r.username, r.password_hash, json.dumps(r.roles), r.created_at)
    if isinstance(r, ConversationRow):
        return (r.id, r.title, r.owner_id, r.assistant_id, r.created_at, r.updated_at, r.last_seq,
                r.last_message_id, r.deleted)
    if isinstance(r, MessageRow):
        return (r.id, r.conversation_id, r.seq, r.sender_id, r.message_type, r.content, r.status, r.client_msg_id,
                r.reply_to, r.assistant_id, None if r.usage is None else _encoder.encode(r.usage).decode(),
                r.finish_reason, r.owner, r.created_at, r.updated_at)
    return (r.conversation_id, r.seq, _encoder.encode(r.conversation).decode(), r.created_at)


def member_values(rows: Sequence[Row]) -> list[tuple[Id, Id]]:
    """The members rows of copied conversations."""
    return [(r.id, m) for r in rows if isinstance(r, ConversationRow) for m in dict.fromkeys(r.member_ids)]


async def export_pages(kind: str, batch: int,
                       fetch: Callable[[str, tuple[Any, ...]], Awaitable[Sequence[Sequence[Any]]]],
                       ) -> AsyncIterator[list[Row]]:
    """Every row of a kind, one keyset page at a time, through a store's `fetch(query, params)`."""
    key: tuple[Any, ...] | None = None
    while True:
        records = await fetch(page_query(kind, key is None), (*(key or ()), batch))
        if not records:
            return
        members: dict[Id, list[Id]] = {}
        if kind == "conversations":
            for cid, uid in await fetch(members_query(len(records)), tuple(r[0] for r in records)):
                members.setdefault(cid, []).append(uid)
        yield [row(kind, r, members) for r in records]
        key = page_key(kind, records[-1])


def keep_int_id(source_id: Id, ordinal: int) -> Id:
    """A SQL store's id for a copied row: the source's integer id, or the row's place in the source's order."""
    return source_id if isinstance(source_id, int) else ordinal
