"""The store interface: users, conversations, members, messages, and the per-conversation seq."""
from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass
from typing import Any


def utcnow() -> str:
    """Now as ISO 8601 UTC with milliseconds and a Z (sortable as text)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class StoredEvent:
    """One stored change of a conversation, for replay: its seq, frame type and data."""

    seq: int
    type: str  # message_received | message_added | conversation_updated
    data: dict


class Store(abc.ABC):
    """Persistence. Every change of a conversation gets the next seq in the same transaction."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and migrate."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and disconnect."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the store answers (for /readyz)."""

    # Users.
    @abc.abstractmethod
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> dict:
        """Create a user; Conflict if the name is taken. Returns {id, username, roles}."""

    @abc.abstractmethod
    async def get_user_by_name(self, username: str) -> dict | None:
        """{id, username, roles, password_hash} or None."""

    @abc.abstractmethod
    async def get_user(self, user_id: Any) -> dict | None:
        """{id, username, roles} or None."""

    # Conversations.
    @abc.abstractmethod
    async def create_conversation(self, owner_id: Any, title: str, assistant_id: str, member_ids: list[Any]) -> dict:
        """Create a conversation (seq stays 0) with the owner and members; returns it."""

    @abc.abstractmethod
    async def get_conversation(self, conversation_id: Any) -> dict | None:
        """The conversation object (with `deleted` and `seq`), or None if it never existed."""

    @abc.abstractmethod
    async def is_member(self, conversation_id: Any, user_id: Any) -> bool:
        """Whether the user is a member (of a deleted conversation too)."""

    @abc.abstractmethod
    async def list_conversations(self, user_id: Any, limit: int, before: str | None,
                                 before_id: Any = None) -> list[dict]:
        """The user's live conversations, newest `updated_at` first, older than `before`.

        With `before_id`, the cursor is the pair (updated_at, id), so conversations updated in
        the same millisecond are neither skipped nor repeated across pages.
        """

    @abc.abstractmethod
    async def update_conversation(self, conversation_id: Any, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Any] | None = None) -> tuple[dict, int]:
        """Apply a change as one seq'd event; returns (conversation, seq)."""

    @abc.abstractmethod
    async def delete_conversation(self, conversation_id: Any) -> tuple[dict, int]:
        """Mark deleted as one seq'd event; returns (conversation, seq)."""

    # Messages.
    @abc.abstractmethod
    async def add_message(self, conversation_id: Any, sender_id: Any, content: str, message_type: str,
                          client_msg_id: str | None = None) -> tuple[dict, bool]:
        """Store a complete message with the next seq; (original, False) on a client_msg_id resend."""

    @abc.abstractmethod
    async def find_by_client_msg_id(self, conversation_id: Any, client_msg_id: str) -> dict | None:
        """The message sent earlier with this client_msg_id, or None."""

    @abc.abstractmethod
    async def get_message(self, message_id: Any) -> dict | None:
        """One message, or None."""

    @abc.abstractmethod
    async def create_reply(self, conversation_id: Any, reply_to: Any, assistant_id: str, owner: str) -> dict:
        """A `streaming` assistant message (no seq until it finishes), owned by a process."""

    @abc.abstractmethod
    async def checkpoint_reply(self, message_id: Any, content: str) -> None:
        """Save the text so far of a streaming reply."""

    @abc.abstractmethod
    async def finish_reply(self, message_id: Any, content: str, status: str,
                           usage: dict | None, finish_reason: str) -> dict:
        """Store the final text and status and give the reply its seq; returns the message."""

    @abc.abstractmethod
    async def list_messages(self, conversation_id: Any, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[dict]:
        """The newest `limit` messages in the seq window, oldest first (streaming ones last)."""

    @abc.abstractmethod
    async def history(self, conversation_id: Any, upto_message_id: Any, limit: int) -> list[dict]:
        """Complete messages up to and including one message, oldest first, for provider context."""

    @abc.abstractmethod
    async def events_since(self, conversation_id: Any, since_seq: int) -> list[StoredEvent]:
        """Every stored change with seq > since_seq, in seq order, as replayable frames."""

    @abc.abstractmethod
    async def streaming_replies(self) -> list[dict]:
        """Replies still marked `streaming`, with their `owner`."""
