"""The MongoDB store's documents as `chatd store copy` rows, and back."""
from __future__ import annotations

import json
import time
from typing import Any

import msgspec
from bson import ObjectId

from chatd.models import Conversation, Id, Usage
from chatd.store.rows import ConversationRow, EventRow, MessageRow, Row, UserRow

Doc = dict[str, Any]
COLLECTIONS = {"users": "users", "conversations": "conversations", "messages": "messages",
               "events": "conversation_events"}
_usage = msgspec.json.Decoder(Usage)
_conversation = msgspec.json.Decoder(Conversation)
_encoder = msgspec.json.Encoder()


def sort_key(stamp: str) -> str:
    """A timestamp as the text the store sorts and compares by.

    The same order as the ISO 8601 text itself; the prefix keeps nx-27017 (the wire-compatible
    test server) from reading an ISO-looking query value as a date, which it then never matches.
    """
    return "t" + stamp


def copy_id(source_id: Id, ordinal: int) -> str:
    """A string id is kept; any other becomes an ObjectId that sorts in the source's order.

    The store breaks ties between equal timestamps by `_id`, so copied ids must keep the order of
    the source's: the current second, then the ordinal, is strictly increasing through one copy.
    """
    if isinstance(source_id, str):
        return source_id
    return str(ObjectId(int(time.time()).to_bytes(4, "big") + ordinal.to_bytes(8, "big")))


def row(kind: str, d: Doc) -> Row:
    """A stored document as its row."""
    if kind == "users":
        return UserRow(id=d["_id"], username=d["username"], password_hash=d.get("password_hash"),
                       roles=json.loads(d["roles"]), created_at=d["created_at"])
    if kind == "conversations":
        return ConversationRow(id=d["_id"], title=d["title"], owner_id=d["owner_id"], assistant_id=d["assistant_id"],
                               created_at=d["created_at"], updated_at=d["updated_at"], last_seq=int(d["last_seq"]),
                               last_message_id=d.get("last_message_id"), deleted=d.get("deleted_at") is not None,
                               member_ids=list(d.get("member_ids") or []))
    if kind == "messages":
        usage = d.get("usage")
        return MessageRow(id=d["_id"], conversation_id=d["conversation_id"], seq=d.get("seq"),
                          sender_id=d.get("sender_id"), message_type=d["message_type"], content=d["content"],
                          status=d["status"], client_msg_id=d.get("client_msg_id"), reply_to=d.get("reply_to"),
                          assistant_id=d.get("assistant_id"), usage=None if usage is None else _usage.decode(usage),
                          finish_reason=d.get("finish_reason"), owner=d.get("owner"), created_at=d["created_at"],
                          updated_at=d["updated_at"])
    return EventRow(conversation_id=d["conversation_id"], seq=int(d["seq"]),
                    conversation=_conversation.decode(d["conversation"]), created_at=d["created_at"])


def document(r: Row) -> Doc:
    """A row as the document the store would have written (sort keys included, unset fields left out)."""
    if isinstance(r, UserRow):
        return {"_id": r.id, "username": r.username, "password_hash": r.password_hash, "roles": json.dumps(r.roles),
                "created_at": r.created_at}
    if isinstance(r, ConversationRow):
        doc: Doc = {"_id": r.id, "title": r.title, "owner_id": r.owner_id, "assistant_id": r.assistant_id,
                    "created_at": r.created_at, "updated_at": r.updated_at, "updated_key": sort_key(r.updated_at),
                    "last_seq": r.last_seq, "last_message_id": r.last_message_id, "member_ids": list(r.member_ids)}
        if r.deleted:
            doc["deleted_at"] = r.updated_at
        return doc
    if isinstance(r, MessageRow):
        doc = {"_id": r.id, "conversation_id": r.conversation_id, "sender_id": r.sender_id,
               "message_type": r.message_type, "content": r.content, "status": r.status, "created_at": r.created_at,
               "created_key": sort_key(r.created_at), "updated_at": r.updated_at}
        # Left out rather than null where the store's partial indexes test for presence or type.
        optional = {"seq": r.seq, "seq_at": r.created_at if r.seq is not None else None,
                    "client_msg_id": r.client_msg_id, "reply_to": r.reply_to, "assistant_id": r.assistant_id,
                    "usage": None if r.usage is None else _encoder.encode(r.usage).decode(),
                    "finish_reason": r.finish_reason, "owner": r.owner}
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc
    return {"conversation_id": r.conversation_id, "seq": r.seq,
            "conversation": _encoder.encode(r.conversation).decode(), "created_at": r.created_at}
