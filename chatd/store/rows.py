"""Whole-store rows for `chatd store copy`: every field a store keeps, one shape for all stores."""
from __future__ import annotations

import msgspec

from chatd.models import Conversation, Id, Usage

#: The kinds of row, in the order a copy writes them (each refers only to kinds before it).
KINDS = ("users", "conversations", "messages", "events")


class UserRow(msgspec.Struct, kw_only=True, tag="users"):
    """An account, its password hash included."""

    id: Id
    username: str
    password_hash: str | None
    roles: list[str]
    created_at: str


class ConversationRow(msgspec.Struct, kw_only=True, tag="conversations"):
    """A conversation with its members and seq counter."""

    id: Id
    title: str
    owner_id: Id
    assistant_id: str
    created_at: str
    updated_at: str
    last_seq: int
    last_message_id: Id | None
    deleted: bool
    member_ids: list[Id]


class MessageRow(msgspec.Struct, kw_only=True, tag="messages"):
    """A message or reply with everything stored about it."""

    id: Id
    conversation_id: Id
    seq: int | None
    sender_id: Id | None
    message_type: str
    content: str
    status: str
    client_msg_id: str | None
    reply_to: Id | None
    assistant_id: str | None
    usage: Usage | None
    finish_reason: str | None
    owner: str | None
    created_at: str
    updated_at: str


class EventRow(msgspec.Struct, kw_only=True, tag="events"):
    """A stored conversation change (`conversation_updated` / `conversation_deleted` on replay)."""

    conversation_id: Id
    seq: int
    conversation: Conversation
    created_at: str


Row = UserRow | ConversationRow | MessageRow | EventRow
