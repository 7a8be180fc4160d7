"""The store interface: users, conversations, members, messages, and the per-conversation seq."""
from __future__ import annotations

import abc
import datetime as _dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NamedTuple

from chatd.models import Conversation, Id, Message, Usage, User

if TYPE_CHECKING:
    from chatd.store.rows import Row

#: The largest key a 64-bit integer column holds (SQLite INTEGER, PostgreSQL BIGINT).
INT_KEY_MAX = (1 << 63) - 1


def int_key(value: object) -> int | None:
    """An id as an integer-keyed store's key; None when it cannot name a row (a string, ≤ 0, beyond 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT_KEY_MAX:
        return None
    return value


def seq_bound(value: int) -> int:
    """A seq bound from a client, clamped into the 64-bit range (every stored seq lies inside it)."""
    return max(-1, min(value, INT_KEY_MAX))


def utcnow() -> str:
    """Now as ISO 8601 UTC with milliseconds and a Z (sortable as text)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class StoredEvent(NamedTuple):
    """One stored change of a conversation, for replay: a message, or the conversation as it changed."""

    seq: int
    record: Message | Conversation


class StoredMessage(NamedTuple):
    """What `add_message` did: the message, whether it is new, and the conversation it changed."""

    message: Message
    created: bool
    conversation: Conversation | None  # None for a resend: nothing changed


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

    async def write_problem(self) -> str | None:
        """Why a write would fail now (for /readyz), or None; a database server reports through ping."""
        return None if await self.ping() else "the database does not answer"

    @abc.abstractmethod
    async def migrations_applied(self) -> list[int]:
        """The schema versions recorded as applied, in order (each migration runs once)."""

    # Users.
    @abc.abstractmethod
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> User:
        """Create a user; Conflict if the name is taken."""

    @abc.abstractmethod
    async def get_user_by_name(self, username: str) -> User | None:
        """The user with its password hash, or None."""

    @abc.abstractmethod
    async def get_user(self, user_id: Id) -> User | None:
        """The user (without the password hash), or None."""

    @abc.abstractmethod
    async def missing_users(self, user_ids: list[Id]) -> list[Id]:
        """The ids that name no user, in the order given, each once: one read for the whole list."""

    # Conversations.
    @abc.abstractmethod
    async def create_conversation(self, owner_id: Id, title: str, assistant_id: str,
                                  member_ids: list[Id]) -> Conversation:
        """Create a conversation (seq stays 0) with the owner and members; returns it."""

    @abc.abstractmethod
    async def get_conversation(self, conversation_id: Id) -> Conversation | None:
        """The conversation (deleted ones too), or None if it never existed."""

    @abc.abstractmethod
    async def member_conversation(self, conversation_id: Id, user_id: Id) -> Conversation | None:
        """The conversation if the user is a member (deleted ones too), else None: one read."""

    @abc.abstractmethod
    async def is_member(self, conversation_id: Id, user_id: Id) -> bool:
        """Whether the user is a member (of a deleted conversation too)."""

    @abc.abstractmethod
    async def list_conversations(self, user_id: Id, limit: int, before: str | None,
                                 before_id: Id | None = None) -> list[Conversation]:
        """The user's live conversations, newest `updated_at` first, older than `before`.

        With `before_id`, the cursor is the pair (updated_at, id), so conversations updated in
        the same millisecond are neither skipped nor repeated across pages.
        """

    @abc.abstractmethod
    async def update_conversation(self, conversation_id: Id, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Id] | None = None) -> Conversation:
        """Apply a change as one seq'd event; the conversation's `seq` is the change's."""

    @abc.abstractmethod
    async def delete_conversation(self, conversation_id: Id) -> Conversation:
        """Mark deleted as one seq'd event; the conversation's `seq` is the change's."""

    # Messages.
    @abc.abstractmethod
    async def add_message(self, conversation_id: Id, sender_id: Id | None, content: str, message_type: str,
                          client_msg_id: str | None = None) -> StoredMessage:
        """Store a complete message with the next seq; the original (not created) on a client_msg_id resend."""

    @abc.abstractmethod
    async def find_by_client_msg_id(self, conversation_id: Id, client_msg_id: str) -> Message | None:
        """The message sent earlier with this client_msg_id, or None."""

    @abc.abstractmethod
    async def get_message(self, message_id: Id) -> Message | None:
        """One message, or None."""

    @abc.abstractmethod
    async def create_reply(self, conversation_id: Id, reply_to: Id, assistant_id: str, owner: str) -> Message:
        """A `streaming` assistant message (no seq until it finishes), owned by a process."""

    @abc.abstractmethod
    async def checkpoint_reply(self, message_id: Id, content: str) -> None:
        """Save the text so far of a streaming reply."""

    @abc.abstractmethod
    async def finish_reply(self, message_id: Id, content: str, status: str,
                           usage: Usage | None, finish_reason: str) -> tuple[Message, Conversation | None]:
        """Store the final text and status and give the reply its seq; the message and its conversation.

        A reply finished already (by an orphan sweep) is left as it is: (it, None).
        """

    @abc.abstractmethod
    async def list_messages(self, conversation_id: Id, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[Message]:
        """The newest `limit` messages in the seq window, oldest first (streaming ones last)."""

    @abc.abstractmethod
    async def history(self, conversation_id: Id, upto_message_id: Id, limit: int) -> list[Message]:
        """Complete messages up to and including one message, oldest first, for provider context."""

    @abc.abstractmethod
    async def events_since(self, conversation_id: Id, since_seq: int) -> list[StoredEvent]:
        """Every stored change with seq > since_seq, in seq order, as replayable frames."""

    @abc.abstractmethod
    async def streaming_replies(self) -> list[Message]:
        """Replies still marked `streaming`, with their `owner`."""

    # Whole-store rows, for `chatd store copy` (chatd/store/copy.py).
    @abc.abstractmethod
    async def count_rows(self, kind: str) -> int:
        """How many rows of a kind (`chatd.store.rows.KINDS`) the store holds."""

    @abc.abstractmethod
    def export_rows(self, kind: str, batch: int) -> AsyncIterator[list[Row]]:
        """Every row of a kind in batches: users, conversations, messages by id, events by (conversation, seq)."""

    @abc.abstractmethod
    async def import_rows(self, kind: str, rows: list[Row]) -> None:
        """Insert rows as they are (ids, seqs and timestamps kept) into a store being filled by a copy."""

    @abc.abstractmethod
    async def finish_import(self) -> None:
        """Make the store ready to serve after a copy (id sequences past the copied ids)."""

    @abc.abstractmethod
    def id_for_copy(self, kind: str, source_id: Id, ordinal: int) -> Id:
        """The id a copied row gets here: the source's where this store can keep it, else a new one in order."""
