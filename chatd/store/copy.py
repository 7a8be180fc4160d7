"""`chatd store copy`: every row of one store into another empty one, then verified by counts and checksums.

Ids are kept where the destination can keep them (integers into SQLite or PostgreSQL, so page
URLs such as `#/c/12` stay valid); otherwise the destination gives new ones in the source's order
(MongoDB ObjectIds, or integers for a MongoDB source), and every reference is rewritten through
the same map. The checksum of a kind is an order-independent sum of each row's SHA-256 after
mapping, so the source and the destination are compared row for row without sorting either.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from chatd.errors import ChatdError
from chatd.models import Conversation, Id, Message
from chatd.store import Store
from chatd.store.rows import KINDS, ConversationRow, EventRow, MessageRow, Row, UserRow

#: Rows written per destination round trip.
BATCH = 500
_encoder = msgspec.json.Encoder(order="sorted")


class CopyError(ChatdError):
    """The copy cannot start (destination not empty) or did not verify."""

    code = "INTERNAL_ERROR"


@dataclass
class KindReport:
    """What was copied of one kind, and whether the destination matched."""

    count: int = 0
    source_sum: int = 0
    copied_count: int = 0
    copied_sum: int = 0

    @property
    def ok(self) -> bool:
        """Whether the destination holds exactly the source's rows."""
        return self.count == self.copied_count and self.source_sum == self.copied_sum

    @property
    def checksum(self) -> str:
        """The source checksum as hex (the destination's when they differ is in `copied_sum`)."""
        return f"{self.source_sum:064x}"[:16]


@dataclass
class CopyReport:
    """Counts and checksums per kind."""

    kinds: dict[str, KindReport] = field(default_factory=lambda: {k: KindReport() for k in KINDS})

    @property
    def ok(self) -> bool:
        """Whether every kind verified."""
        return all(k.ok for k in self.kinds.values())


class IdMap:
    """Source ids to destination ids for one kind, assigned in source order."""

    def __init__(self, new_id: Callable[[Id, int], Id]) -> None:
        self._new_id = new_id
        self._ids: dict[Id, Id] = {}

    def add(self, source: Id) -> Id:
        """The destination id for a source row (assigned once)."""
        target = self._new_id(source, len(self._ids) + 1)
        self._ids[source] = target
        return target

    def __getitem__(self, source: Id) -> Id:
        return self._ids[source]

    def get(self, source: Id | None) -> Id | None:
        """The mapped id, None for None (and for a reference to a row that no longer exists)."""
        return None if source is None else self._ids.get(source)


def _digest(row: Row) -> int:
    # Members in a canonical order: SQL stores list them by user id, MongoDB as they were added.
    if isinstance(row, ConversationRow):
        row = msgspec.structs.replace(row, member_ids=sorted(row.member_ids, key=str))
    elif isinstance(row, EventRow):
        conv = row.conversation
        row = msgspec.structs.replace(row, conversation=msgspec.structs.replace(
            conv, member_ids=sorted(conv.member_ids, key=str)))
    return int.from_bytes(hashlib.sha256(_encoder.encode(row)).digest(), "big")


class _Mapper:
    """Rewrites every id in a source row through the per-kind maps."""

    def __init__(self, dest: Store) -> None:
        self.users = IdMap(lambda s, n: dest.id_for_copy("users", s, n))
        self.conversations = IdMap(lambda s, n: dest.id_for_copy("conversations", s, n))
        self.messages = IdMap(lambda s, n: dest.id_for_copy("messages", s, n))

    def assign(self, row: Row) -> None:
        """Give a user, conversation or message its destination id (messages first, as replies refer forward)."""
        if isinstance(row, UserRow):
            self.users.add(row.id)
        elif isinstance(row, ConversationRow):
            self.conversations.add(row.id)
        elif isinstance(row, MessageRow):
            self.messages.add(row.id)

    def map(self, row: Row) -> Row:
        """The row as the destination stores it."""
        if isinstance(row, UserRow):
            return msgspec.structs.replace(row, id=self.users[row.id])
        if isinstance(row, ConversationRow):
            return msgspec.structs.replace(row, id=self.conversations[row.id], owner_id=self.users[row.owner_id],
                                           last_message_id=self.messages.get(row.last_message_id),
                                           member_ids=[self.users[m] for m in row.member_ids])
        if isinstance(row, MessageRow):
            return msgspec.structs.replace(row, id=self.messages[row.id],
                                           conversation_id=self.conversations[row.conversation_id],
                                           sender_id=self.users.get(row.sender_id),
                                           reply_to=self.messages.get(row.reply_to))
        return msgspec.structs.replace(row, conversation_id=self.conversations[row.conversation_id],
                                       conversation=self._conversation(row.conversation))

    def _conversation(self, conv: Conversation) -> Conversation:
        last = conv.last_message
        return msgspec.structs.replace(
            conv, id=self.conversations[conv.id], owner_id=self.users[conv.owner_id],
            member_ids=[self.users[m] for m in conv.member_ids],
            last_message=None if last is None else self._message(last))

    def _message(self, msg: Message) -> Message:
        mid = self.messages.get(msg.id)
        return msgspec.structs.replace(msg, id=msg.id if mid is None else mid,
                                       conversation_id=self.conversations[msg.conversation_id],
                                       sender_id=self.users.get(msg.sender_id),
                                       reply_to=self.messages.get(msg.reply_to))


async def copy_store(source: Store, dest: Store, progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy every row of `source` into the empty `dest`, then read `dest` back and verify (both open)."""
    for kind in KINDS:
        if await dest.count_rows(kind):
            raise CopyError(f"the destination store already holds {kind}; store copy needs an empty store")
    mapper = _Mapper(dest)
    # Ids first, in source order, so a row may refer to one that comes later (a conversation's
    # last message, a reply's parent is always earlier but a moved one need not be).
    for kind in KINDS[:3]:
        async for batch in source.export_rows(kind, BATCH):
            for row in batch:
                mapper.assign(row)
    report = CopyReport()
    for kind in KINDS:
        part = report.kinds[kind]
        async for batch in source.export_rows(kind, BATCH):
            mapped = [mapper.map(row) for row in batch]
            await dest.import_rows(kind, mapped)
            part.count += len(mapped)
            part.source_sum = (part.source_sum + sum(_digest(r) for r in mapped)) % (1 << 256)
            if progress is not None:
                progress(kind, part.count)
    await dest.finish_import()
    for kind in KINDS:
        part = report.kinds[kind]
        async for batch in dest.export_rows(kind, BATCH):
            part.copied_count += len(batch)
            part.copied_sum = (part.copied_sum + sum(_digest(r) for r in batch)) % (1 << 256)
    return report


def redacted(url: str) -> str:
    """A store URL fit to print: its password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


async def copy_between(from_url: str, to_url: str, out: Callable[[str], None]) -> CopyReport:
    """`chatd store copy FROM_URL TO_URL`: open both, copy, print counts and checksums; CopyError unless verified."""
    from chatd.store.urls import store_from_url

    source, dest = store_from_url(from_url), store_from_url(to_url)
    await source.open()
    try:
        await dest.open()
        try:
            out(f"copying {redacted(from_url)} -> {redacted(to_url)}")
            report = await copy_store(source, dest)
        finally:
            await dest.close()
    finally:
        await source.close()
    for kind, part in report.kinds.items():
        verdict = "ok" if part.ok else f"MISMATCH: copied {part.copied_count}, sha256-sum {part.copied_sum:064x}"[:52]
        out(f"  {kind:<13} {part.count:>9}  sha256-sum {part.checksum}  {verdict}")
    if not report.ok:
        raise CopyError("the copy did not verify: the destination differs from the source (see above)")
    out("verified: every row copied, counts and checksums match")
    return report
