"""The records every store returns: users, conversations, messages and their usage (msgspec Structs).

They encode straight to the protocol's JSON objects (PROTOCOL.md §4): optional fields that are
unset are left out, the ones the protocol always shows (`sender_id`, `seq`) are always there.
"""
from __future__ import annotations

import msgspec

#: An id: an integer in SQLite and PostgreSQL, a string in MongoDB; clients compare ids by equality.
Id = int | str


class Usage(msgspec.Struct, kw_only=True):
    """Token counts of one finished reply, as the protocol's `usage` object."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        """Usage with the total filled in."""
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One stored message; an assistant reply has `seq` None while it streams."""

    id: Id
    conversation_id: Id
    content: str
    message_type: str
    sender_id: Id | None
    created_at: str
    status: str
    seq: int | None
    client_msg_id: str | None = None
    reply_to: Id | None = None
    assistant_id: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    owner: str | None = None  # the process generating a streaming reply (for the orphan sweep)

    @property
    def is_reply(self) -> bool:
        """Whether this is an assistant reply to a message (its stored event is `message_added`)."""
        return self.message_type == "assistant" and self.reply_to is not None


class Conversation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A conversation with its members; `seq` is its latest stored change."""

    id: Id
    title: str
    owner_id: Id
    member_ids: list[Id]
    assistant_id: str
    created_at: str
    updated_at: str
    seq: int
    last_message: Message | None = None
    deleted: bool = False


class User(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An account; `password_hash` is only read where a password is checked."""

    id: Id
    username: str
    roles: list[str] = msgspec.field(default_factory=list)
    password_hash: str | None = None
