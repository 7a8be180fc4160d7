"""The MongoDB store: PyMongo's async client, index migrations, seq from an atomic `$inc` counter.

No multi-document transactions (a standalone server has none), so every write is a short
chain of single-document writes ordered so that a seq is only ever taken by a record that
already exists and has won its race:

- a message is inserted first without a seq; the unique `(conversation_id, client_msg_id)`
  index decides a concurrent resend before any seq is taken. Only then does the writer take
  the next seq (`find_one_and_update` with `$inc` on the conversation) and set it on the record;
- a reply is finished by a conditional update on `status: "streaming"`: one finisher wins and
  only the winner takes a seq;
- a conversation change is applied together with its `$inc` in one update, whose result is the
  snapshot stored as the change's event.

A record's seq is set a moment after it was taken, so seq N+1 may be readable before seq N.
`events_since` stops before such a hole while it is young (the writer of N is still under way)
and only skips a hole older than HOLE_WAIT_S (its writer died between its two writes).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

from chatd.errors import Conflict, NotFound, StoreUnavailable
from chatd.models import Conversation, Id, Message, Usage, User
from chatd.store import Store, StoredEvent, StoredMessage, mongodb_rows, seq_bound, utcnow
from chatd.store.mongodb_rows import sort_key
from chatd.store.rows import Row

Doc = dict[str, Any]
T = TypeVar("T")

#: Each migration is a list of (collection, keys, options) index creations.
MIGRATIONS: list[list[tuple[str, list[tuple[str, int]], Doc]]] = [
    # 1: the first schema. Partial indexes: a message without a seq (a reply while it streams, a
    # message between its insert and its seq) or without a client_msg_id is outside them.
    [
        ("users", [("username", ASCENDING)], {"unique": True, "name": "users_username"}),
        ("conversations", [("member_ids", ASCENDING), ("updated_key", DESCENDING)],
         {"name": "conversations_member_updated"}),
        ("messages", [("conversation_id", ASCENDING), ("seq", ASCENDING)],
         {"unique": True, "name": "messages_seq", "partialFilterExpression": {"seq": {"$exists": True}}}),
        ("messages", [("conversation_id", ASCENDING), ("client_msg_id", ASCENDING)],
         {"unique": True, "name": "messages_client_msg_id",
          "partialFilterExpression": {"client_msg_id": {"$type": "string"}}}),
        ("messages", [("conversation_id", ASCENDING), ("created_key", DESCENDING)],
         {"name": "messages_created"}),
        ("messages", [("status", ASCENDING)],
         {"name": "messages_streaming", "partialFilterExpression": {"status": "streaming"}}),
        ("conversation_events", [("conversation_id", ASCENDING), ("seq", ASCENDING)],
         {"unique": True, "name": "conversation_events_seq"}),
    ],
]

#: How long a seq hole may be waited for before a replay skips it (its writer is gone).
HOLE_WAIT_S = 5.0
#: How long a resend or a losing finisher waits for the winner to set the original's seq.
SETTLE_WAIT_S = 10.0
#: How often setting a taken seq is tried while the server is lost (0.25 s apart).
SET_SEQ_TRIES = 8

#: Server codes meaning "shutting down / not primary now": the server is going away, not the request bad.
_UNAVAILABLE_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})

_usage_decoder = msgspec.json.Decoder(Usage)
_conversation_decoder = msgspec.json.Decoder(Conversation)
_encoder = msgspec.json.Encoder()


def new_id() -> str:
    """A fresh id: an ObjectId as 24 hex digits (sortable by creation second)."""
    return str(ObjectId())


def _key(value: object) -> str | None:
    """An id as this store's key: a non-empty string; None for anything that cannot name a document."""
    return value if isinstance(value, str) and value else None


def _unavailable(e: Exception) -> bool:
    if isinstance(e, ConnectionFailure):
        return True
    return isinstance(e, OperationFailure) and not isinstance(e, DuplicateKeyError) and e.code in _UNAVAILABLE_CODES


def _age_s(stamp: str | None) -> float:
    """Seconds since an ISO 8601 UTC stamp (infinite when there is none)."""
    if not stamp:
        return float("inf")
    then = _dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
    return (_dt.datetime.now(_dt.UTC) - then).total_seconds()


def _message(doc: Doc) -> Message:
    usage = doc.get("usage")
    status = doc["status"]
    return Message(id=doc["_id"], conversation_id=doc["conversation_id"], content=doc["content"],
                   message_type=doc["message_type"], sender_id=doc.get("sender_id"), created_at=doc["created_at"],
                   status=status, seq=doc.get("seq"), client_msg_id=doc.get("client_msg_id"),
                   reply_to=doc.get("reply_to"), assistant_id=doc.get("assistant_id"),
                   usage=_usage_decoder.decode(usage) if usage is not None else None,
                   finish_reason=doc.get("finish_reason"),
                   owner=doc.get("owner") if status == "streaming" else None)


def _conversation(doc: Doc, last_message: Message | None) -> Conversation:
    return Conversation(id=doc["_id"], title=doc["title"], owner_id=doc["owner_id"],
                        member_ids=list(doc.get("member_ids") or []), assistant_id=doc["assistant_id"],
                        created_at=doc["created_at"], updated_at=doc["updated_at"], seq=int(doc["last_seq"]),
                        last_message=last_message, deleted=doc.get("deleted_at") is not None)


class MongoStore(Store):
    """MongoDB through one `AsyncMongoClient` (its pool sized by `pool_size`); ids are strings.

    A lost server fails the operation with StoreUnavailable; a read is tried once more first
    (it changes nothing), a write is not repeated behind the caller's back.
    """

    def __init__(self, url: str, pool_size: int = 10, server_timeout_s: float = 5.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.server_timeout_s = server_timeout_s
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None

    @property
    def db(self) -> AsyncDatabase[Doc]:
        """The database the store_url names (`chatd` when it names none)."""
        assert self._db is not None, "store is not open"
        return self._db

    async def open(self) -> None:
        """Create the client and run pending migrations."""
        timeout_ms = int(self.server_timeout_s * 1000)
        self._client = AsyncMongoClient(self.url, maxPoolSize=self.pool_size, tz_aware=True,
                                        serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
        self._db = self._client.get_default_database("chatd")
        try:
            await self._migrate()
        except Exception as e:
            if not _unavailable(e):
                raise
            await self.close()
            raise StoreUnavailable(f"MongoDB at the store_url is not reachable ({type(e).__name__}: {e})") from e

    async def close(self) -> None:
        """Close the client and its pool."""
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    async def ping(self) -> bool:
        """Run the server's `ping` command."""
        try:
            return bool((await self._read(lambda: self.db.command("ping"))).get("ok"))
        except StoreUnavailable:
            return False

    async def _write(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a write; a lost server is StoreUnavailable."""
        try:
            return await fn()
        except Exception as e:
            if _unavailable(e):
                raise StoreUnavailable("The database is unavailable; try again shortly") from e
            raise

    async def _read(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a read, once more if the server was lost (repeating a read is safe)."""
        for attempt in (1, 2):
            try:
                return await fn()
            except Exception as e:
                if not _unavailable(e):
                    raise
                if attempt == 2:
                    raise StoreUnavailable("The database is unavailable; try again shortly") from e
        raise AssertionError("unreachable")

    async def _migrate(self) -> None:
        """Create the indexes of each migration not yet recorded, then record it.

        Two processes migrating at once both create the same indexes (a no-op the second time)
        and both try to record the version: the `_id` makes that one record.
        """
        versions = self.db["schema_version"]
        done = {d["_id"] async for d in versions.find({}, {"_id": 1})}
        for version, indexes in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            for collection, keys, options in indexes:
                await self.db[collection].create_index(keys, **options)
            try:
                await versions.insert_one({"_id": version, "applied_at": utcnow()})
            except DuplicateKeyError:
                pass

    async def migrations_applied(self) -> list[int]:
        """The schema versions recorded, in order."""
        async def read() -> list[int]:
            return [int(d["_id"]) async for d in self.db["schema_version"].find({}, {"_id": 1}).sort("_id", ASCENDING)]

        return await self._read(read)

    # Users.
    async def create_user(self, username: str, password_hash: str | None, roles: list[str] | None = None) -> User:
        """Insert a user; Conflict if the name is taken."""
        uid = new_id()
        doc = {"_id": uid, "username": username, "password_hash": password_hash,
               "roles": json.dumps(roles or []), "created_at": utcnow()}
        try:
            await self._write(lambda: self.db["users"].insert_one(doc))
        except DuplicateKeyError:
            raise Conflict(f"Username {username!r} is taken") from None
        return User(id=uid, username=username, roles=list(roles or []))

    async def get_user_by_name(self, username: str) -> User | None:
        """Look a user up by name, with the password hash."""
        doc = await self._read(lambda: self.db["users"].find_one({"username": username}))
        return None if doc is None else User(id=doc["_id"], username=doc["username"],
                                             roles=json.loads(doc["roles"]), password_hash=doc.get("password_hash"))

    async def get_user(self, user_id: Id) -> User | None:
        """Look a user up by id."""
        uid = _key(user_id)
        if uid is None:
            return None
        doc = await self._read(lambda: self.db["users"].find_one({"_id": uid}))
        return None if doc is None else User(id=doc["_id"], username=doc["username"], roles=json.loads(doc["roles"]))

    async def missing_users(self, user_ids: list[Id]) -> list[Id]:
        """One query for the whole list."""
        keys = sorted({k for k in map(_key, user_ids) if k is not None})

        async def found() -> set[str]:
            return {doc["_id"] async for doc in self.db["users"].find({"_id": {"$in": keys}}, {"_id": 1})}

        have = await self._read(found) if keys else set()
        return [u for u in dict.fromkeys(user_ids) if _key(u) not in have]

    async def _check_users(self, user_ids: list[Id]) -> list[str]:
        """The ids as keys, each naming a user; NotFound otherwise (there are no foreign keys to do it)."""
        keys = [_key(u) for u in user_ids]
        wanted = {k for k in keys if k is not None}
        if len(wanted) != len(set(user_ids)):
            raise NotFound("A member does not exist")

        async def count() -> int:
            return await self.db["users"].count_documents({"_id": {"$in": sorted(wanted)}})

        if wanted and await self._read(count) != len(wanted):
            raise NotFound("A member does not exist")
        return [k for k in dict.fromkeys(keys) if k is not None]

    # Conversations.
    async def _last_messages(self, ids: list[str]) -> dict[str, Message]:
        if not ids:
            return {}
        docs = await self.db["messages"].find({"_id": {"$in": ids}}).to_list()
        return {d["_id"]: _message(d) for d in docs}

    async def _with_last(self, doc: Doc, last_message: Message | None = None) -> Conversation:
        """The conversation with its last message (read, unless the caller has it)."""
        last_id = doc.get("last_message_id")
        if last_id is None:
            last_message = None
        elif last_message is None or last_message.id != last_id:
            last_message = (await self._last_messages([last_id])).get(last_id)
        return _conversation(doc, last_message)

    async def create_conversation(self, owner_id: Id, title: str, assistant_id: str,
                                  member_ids: list[Id]) -> Conversation:
        """Insert the conversation with its members (owner first)."""
        members = await self._check_users([owner_id] + [m for m in member_ids if m != owner_id])
        now = utcnow()
        doc = {"_id": new_id(), "title": title, "owner_id": members[0], "assistant_id": assistant_id,
               "created_at": now, "updated_at": now, "updated_key": sort_key(now), "last_seq": 0,
               "last_message_id": None, "member_ids": members}
        await self._write(lambda: self.db["conversations"].insert_one(doc))
        return _conversation(doc, None)

    async def get_conversation(self, conversation_id: Id) -> Conversation | None:
        """Read a conversation (deleted ones too)."""
        cid = _key(conversation_id)
        if cid is None:
            return None

        async def read() -> Conversation | None:
            doc = await self.db["conversations"].find_one({"_id": cid})
            return None if doc is None else await self._with_last(doc)

        return await self._read(read)

    async def member_conversation(self, conversation_id: Id, user_id: Id) -> Conversation | None:
        """The conversation when the user is one of its members."""
        conv = await self.get_conversation(conversation_id)
        return conv if conv is not None and user_id in conv.member_ids else None

    async def is_member(self, conversation_id: Id, user_id: Id) -> bool:
        """Whether the user is in the conversation's member list."""
        cid, uid = _key(conversation_id), _key(user_id)
        if cid is None or uid is None:
            return False
        doc = await self._read(lambda: self.db["conversations"].find_one({"_id": cid, "member_ids": uid}, {"_id": 1}))
        return doc is not None

    async def list_conversations(self, user_id: Id, limit: int, before: str | None,
                                 before_id: Id | None = None) -> list[Conversation]:
        """Newest first by (updated_at, id), paged by the `before` (and `before_id`) cursor; two reads."""
        uid = _key(user_id)
        if uid is None or limit <= 0:
            return []
        # Each condition its own `$and` term: nx-27017 mishandles a top-level `$or` beside other fields.
        terms: list[Doc] = [{"member_ids": uid}, {"deleted_at": None}]
        cursor_id = _key(before_id)
        if before and cursor_id is not None:
            terms.append({"$or": [{"updated_key": {"$lt": sort_key(before)}},
                                  {"$and": [{"updated_key": sort_key(before)}, {"_id": {"$lt": cursor_id}}]}]})
        elif before:
            terms.append({"updated_key": {"$lt": sort_key(before)}})
        query: Doc = {"$and": terms}

        async def read() -> list[Conversation]:
            docs = await (self.db["conversations"].find(query)
                          .sort([("updated_key", DESCENDING), ("_id", DESCENDING)]).limit(seq_bound(limit)).to_list())
            last = await self._last_messages([d["last_message_id"] for d in docs if d.get("last_message_id")])
            return [_conversation(d, last.get(d.get("last_message_id") or "")) for d in docs]

        return await self._read(read)

    async def _change(self, cid: str, update: Doc) -> Conversation:
        """Apply a conversation change and take its seq in one update; store the snapshot as its event."""
        now = utcnow()
        update.setdefault("$set", {}).update(updated_at=now, updated_key=sort_key(now))
        update["$inc"] = {"last_seq": 1}

        async def change() -> Conversation:
            doc = await self.db["conversations"].find_one_and_update({"_id": cid}, update,
                                                                     return_document=ReturnDocument.AFTER)
            if doc is None:
                raise NotFound("Conversation not found")
            conv = await self._with_last(doc)
            await self.db["conversation_events"].insert_one({
                "conversation_id": cid, "seq": conv.seq, "conversation": _encoder.encode(conv).decode(),
                "created_at": doc["updated_at"]})
            return conv

        return await self._write(change)

    async def update_conversation(self, conversation_id: Id, *, title: str | None = None,
                                  assistant_id: str | None = None,
                                  add_member_ids: list[Id] | None = None) -> Conversation:
        """Rename / change assistant / add members as one seq'd change."""
        cid = _key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")
        update: Doc = {"$set": {}}
        if title is not None:
            update["$set"]["title"] = title
        if assistant_id is not None:
            update["$set"]["assistant_id"] = assistant_id
        if add_member_ids:
            update["$addToSet"] = {"member_ids": {"$each": await self._check_users(add_member_ids)}}
        return await self._change(cid, update)

    async def delete_conversation(self, conversation_id: Id) -> Conversation:
        """Soft-delete (members keep seeing NOT_FOUND rather than FORBIDDEN)."""
        cid = _key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")
        return await self._change(cid, {"$set": {"deleted_at": utcnow()}})

    # Messages.
    async def _take_seq(self, cid: str, message_id: str) -> Doc | None:
        """The next seq of the conversation for a message that has won its race: the conversation after it."""
        now = utcnow()
        return await self.db["conversations"].find_one_and_update(
            {"_id": cid}, {"$inc": {"last_seq": 1},
                          "$set": {"updated_at": now, "updated_key": sort_key(now), "last_message_id": message_id}},
            return_document=ReturnDocument.AFTER)

    async def _set_seq(self, message_id: str, seq: int) -> str:
        """Set a taken seq on its record; tried again for a moment if the server is lost (it is idempotent).

        Between taking a seq and setting it is the one window where a lost server leaves a hole,
        so this write is the one that is repeated.
        """
        seq_at = utcnow()
        for attempt in range(SET_SEQ_TRIES):
            try:
                await self.db["messages"].update_one({"_id": message_id}, {"$set": {"seq": seq, "seq_at": seq_at}})
                return seq_at
            except Exception as e:
                if not _unavailable(e) or attempt == SET_SEQ_TRIES - 1:
                    raise
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")

    async def _settled(self, message_id: str) -> Message:
        """The message once its seq is set (by the writer that won the race for it)."""
        delay = 0.005
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_WAIT_S
        while True:
            doc = await self._read(lambda: self.db["messages"].find_one({"_id": message_id}))
            if doc is None:
                raise NotFound("Message not found")
            if doc.get("seq") is not None:
                return _message(doc)
            if loop.time() > deadline:
                raise StoreUnavailable("The message is still being stored; try again shortly")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def find_by_client_msg_id(self, conversation_id: Id, client_msg_id: str) -> Message | None:
        """The earlier message with this client_msg_id (once it has its seq)."""
        cid = _key(conversation_id)
        if cid is None:
            return None
        doc = await self._read(lambda: self.db["messages"].find_one(
            {"conversation_id": cid, "client_msg_id": client_msg_id}))
        if doc is None:
            return None
        return _message(doc) if doc.get("seq") is not None else await self._settled(doc["_id"])

    async def add_message(self, conversation_id: Id, sender_id: Id | None, content: str, message_type: str,
                          client_msg_id: str | None = None) -> StoredMessage:
        """Insert without a seq (the unique index decides a resend), then take the next seq and set it."""
        cid = _key(conversation_id)
        if cid is None:
            raise NotFound("Conversation not found")
        messages = self.db["messages"]
        if client_msg_id is not None:
            earlier = await self.find_by_client_msg_id(cid, client_msg_id)
            if earlier is not None:
                return StoredMessage(earlier, False, None)
        now = utcnow()
        doc: Doc = {"_id": new_id(), "conversation_id": cid, "sender_id": sender_id, "message_type": message_type,
                    "content": content, "status": "complete", "created_at": now, "created_key": sort_key(now),
                    "updated_at": now}
        if client_msg_id is not None:
            doc["client_msg_id"] = client_msg_id
        try:
            await self._write(lambda: messages.insert_one(doc))
        except DuplicateKeyError:  # a concurrent resend inserted first: it takes the seq, this answers it
            assert client_msg_id is not None
            original = await self._read(lambda: messages.find_one({"conversation_id": cid,
                                                                   "client_msg_id": client_msg_id}))
            if original is None:
                raise
            return StoredMessage(await self._settled(original["_id"]), False, None)

        async def sequence() -> Doc:
            conv_doc = await self._take_seq(cid, doc["_id"])
            if conv_doc is None:
                await messages.delete_one({"_id": doc["_id"]})
                raise NotFound("Conversation not found")
            seq_at = await self._set_seq(doc["_id"], conv_doc["last_seq"])
            doc.update(seq=conv_doc["last_seq"], seq_at=seq_at)
            return conv_doc

        conv_doc = await self._write(sequence)
        msg = _message(doc)
        return StoredMessage(msg, True, _conversation(conv_doc, msg))

    async def get_message(self, message_id: Id) -> Message | None:
        """One message by id."""
        mid = _key(message_id)
        if mid is None:
            return None
        doc = await self._read(lambda: self.db["messages"].find_one({"_id": mid}))
        return None if doc is None else _message(doc)

    async def create_reply(self, conversation_id: Id, reply_to: Id, assistant_id: str, owner: str) -> Message:
        """A streaming placeholder; it gets its seq in finish_reply."""
        now = utcnow()
        doc: Doc = {"_id": new_id(), "conversation_id": conversation_id, "sender_id": None,
                    "message_type": "assistant", "content": "", "status": "streaming", "reply_to": reply_to,
                    "assistant_id": assistant_id, "owner": owner, "created_at": now, "created_key": sort_key(now),
                    "updated_at": now}
        await self._write(lambda: self.db["messages"].insert_one(doc))
        return _message(doc)

    async def checkpoint_reply(self, message_id: Id, content: str) -> None:
        """Save the text so far (only while still streaming): one targeted update."""
        mid = _key(message_id)
        if mid is None:
            return
        await self._write(lambda: self.db["messages"].update_one(
            {"_id": mid, "status": "streaming"}, {"$set": {"content": content, "updated_at": utcnow()}}))

    async def finish_reply(self, message_id: Id, content: str, status: str,
                           usage: Usage | None, finish_reason: str) -> tuple[Message, Conversation | None]:
        """One finisher wins the conditional update on `streaming`; only it takes the seq."""
        mid = _key(message_id)
        if mid is None:
            raise NotFound("Message not found")
        messages = self.db["messages"]
        now = utcnow()
        final: Doc = {"content": content, "status": status, "finish_reason": finish_reason, "updated_at": now,
                      "usage": _encoder.encode(usage).decode() if usage is not None else None}
        won = await self._write(lambda: messages.find_one_and_update(
            {"_id": mid, "status": "streaming"}, {"$set": final, "$unset": {"owner": ""}},
            return_document=ReturnDocument.AFTER))
        if won is None:  # finished already (e.g. by a sweep), or never existed
            return await self._settled(mid), None

        async def sequence() -> Doc | None:
            conv_doc = await self._take_seq(won["conversation_id"], mid)
            if conv_doc is not None:
                seq_at = await self._set_seq(mid, conv_doc["last_seq"])
                won.update(seq=conv_doc["last_seq"], seq_at=seq_at)
            return conv_doc

        conv_doc = await self._write(sequence)
        msg = _message(won)
        return msg, None if conv_doc is None else _conversation(conv_doc, msg)

    async def list_messages(self, conversation_id: Id, limit: int, before_seq: int | None,
                            after_seq: int | None) -> list[Message]:
        """Newest `limit` in the window, oldest first; in-flight replies follow when no before_seq."""
        before_seq = None if before_seq is None else seq_bound(before_seq)
        after_seq = None if after_seq is None else seq_bound(after_seq)
        limit = seq_bound(limit)
        cid = _key(conversation_id)
        if cid is None:
            return []
        window: Doc = {"$gt": after_seq if after_seq is not None else 0}
        if before_seq is not None:
            window["$lt"] = before_seq

        async def read() -> list[Message]:
            messages: list[Message] = []
            if limit > 0:
                docs = await (self.db["messages"].find({"conversation_id": cid, "seq": window})
                              .sort("seq", DESCENDING).limit(limit).to_list())
                messages = [_message(d) for d in reversed(docs)]
            if before_seq is None:
                streaming = await (self.db["messages"].find({"conversation_id": cid, "status": "streaming"})
                                   .sort([("created_key", ASCENDING), ("_id", ASCENDING)]).to_list())
                messages.extend(_message(d) for d in streaming)
            return messages

        return await self._read(read)

    async def history(self, conversation_id: Id, upto_message_id: Id, limit: int) -> list[Message]:
        """Settled, non-empty messages created up to one message, oldest first."""
        cid, mid = _key(conversation_id), _key(upto_message_id)
        if cid is None or mid is None or limit <= 0:
            return []

        async def read() -> list[Message]:
            upto = await self.db["messages"].find_one({"_id": mid}, {"created_key": 1})
            if upto is None:
                return []
            stamp = upto["created_key"]
            docs = await (self.db["messages"].find({"$and": [
                {"conversation_id": cid}, {"seq": {"$gt": 0}}, {"content": {"$gt": ""}},
                {"$or": [{"created_key": {"$lt": stamp}},
                         {"$and": [{"created_key": stamp}, {"_id": {"$lte": mid}}]}]}]})
                .sort([("created_key", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list())
            return [_message(d) for d in reversed(docs)]

        return await self._read(read)

    async def events_since(self, conversation_id: Id, since_seq: int) -> list[StoredEvent]:
        """Messages and conversation changes with seq > since_seq in seq order, up to a young hole."""
        since_seq = seq_bound(since_seq)
        cid = _key(conversation_id)
        if cid is None:
            return []

        async def read() -> tuple[list[Doc], list[Doc]]:
            return (await self.db["messages"].find({"conversation_id": cid, "seq": {"$gt": since_seq}})
                    .sort("seq", ASCENDING).to_list(),
                    await self.db["conversation_events"].find({"conversation_id": cid, "seq": {"$gt": since_seq}})
                    .sort("seq", ASCENDING).to_list())

        message_docs, change_docs = await self._read(read)
        stamped: list[tuple[StoredEvent, str | None]] = [
            (StoredEvent(int(d["seq"]), _message(d)), d.get("seq_at")) for d in message_docs]
        stamped.extend((StoredEvent(int(d["seq"]), _conversation_decoder.decode(d["conversation"])), d["created_at"])
                       for d in change_docs)
        stamped.sort(key=lambda pair: pair[0].seq)
        events: list[StoredEvent] = []
        expected = since_seq + 1
        for event, stamp in stamped:
            # A hole before this event: its writer took the seq and has not set it yet. Stop here
            # (the rest comes live or on the next read) unless the hole is too old to fill still.
            if event.seq > expected and _age_s(stamp) < HOLE_WAIT_S:
                break
            events.append(event)
            expected = event.seq + 1
        return events

    async def streaming_replies(self) -> list[Message]:
        """Replies still streaming, for the crash sweep."""
        docs = await self._read(lambda: self.db["messages"].find({"status": "streaming"}).to_list())
        return [_message(d) for d in docs]

    # Whole-store rows, for `chatd store copy`.
    async def count_rows(self, kind: str) -> int:
        """How many documents of a kind."""
        return int(await self._read(lambda: self.db[mongodb_rows.COLLECTIONS[kind]].count_documents({})))

    async def export_rows(self, kind: str, batch: int) -> AsyncIterator[list[Row]]:
        """Every document of a kind in key order, `batch` at a time (keyset pages: no cursor outlives a page)."""
        collection = self.db[mongodb_rows.COLLECTIONS[kind]]
        order = [("conversation_id", ASCENDING), ("seq", ASCENDING)] if kind == "events" else [("_id", ASCENDING)]
        query: Doc = {}

        async def page(q: Doc) -> list[Doc]:
            return await collection.find(q).sort(order).limit(batch).to_list()

        while True:
            docs = await self._read(functools.partial(page, query))
            if not docs:
                return
            yield [mongodb_rows.row(kind, d) for d in docs]
            last = docs[-1]
            query = ({"$or": [{"conversation_id": {"$gt": last["conversation_id"]}},
                              {"conversation_id": last["conversation_id"], "seq": {"$gt": last["seq"]}}]}
                     if kind == "events" else {"_id": {"$gt": last["_id"]}})

    async def import_rows(self, kind: str, rows: list[Row]) -> None:
        """Insert copied rows as the documents the store writes."""
        docs = [mongodb_rows.document(r) for r in rows]
        await self._write(lambda: self.db[mongodb_rows.COLLECTIONS[kind]].insert_many(docs, ordered=True))

    async def finish_import(self) -> None:
        """Nothing to do: ids are ObjectIds and seq counters live on the conversations."""

    def id_for_copy(self, kind: str, source_id: Id, ordinal: int) -> Id:
        """String ids are kept; others become ObjectIds in the source's order."""
        return mongodb_rows.copy_id(source_id, ordinal)
