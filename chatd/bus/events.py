"""The one event type the bus carries: a server frame encoded once, plus its routing facts.

An event is built where it happens (`message_received(...)`, `stream_content(...)`), its frame is
encoded to JSON exactly once there, and every connection on every process writes those same bytes.
Connections read only the routing fields (`conv`, `seq`, `change`, `msg`, `index`, `exclude_user`)
to order, deduplicate and filter; they never decode the frame.
"""
from __future__ import annotations

from typing import Any

import msgspec

from chatd.models import Conversation, Id, Message, Usage

_encoder = msgspec.json.Encoder()


class _Header(msgspec.Struct, array_like=True):
    """The routing part of an event on the wire between processes."""

    type: str
    conv: Id | None = None
    seq: int | None = None
    change: bool = False
    exclude_user: Id | None = None
    msg: Id | None = None
    index: int | None = None


_header_decoder = msgspec.json.Decoder(_Header)


class Event:
    """A frame for clients (`payload`, already JSON) or a control request (empty `payload`)."""

    __slots__ = ("type", "payload", "conv", "seq", "change", "exclude_user", "msg", "index")

    def __init__(self, type: str, payload: bytes = b"", *, conv: Id | None = None, seq: int | None = None,
                 change: bool = False, exclude_user: Id | None = None, msg: Id | None = None,
                 index: int | None = None) -> None:
        self.type = type
        self.payload = payload
        self.conv = conv
        self.seq = seq
        self.change = change  # a conversation_updated that is a change of its own, not a new message's echo
        self.exclude_user = exclude_user
        self.msg = msg
        self.index = index

    @classmethod
    def frame(cls, frame_type: str, data: Any, **route: Any) -> Event:
        """An event whose frame `{"type", "data"}` is encoded now, once."""
        return cls(frame_type, _encoder.encode({"type": frame_type, "data": data}), **route)

    @property
    def advances(self) -> bool:
        """Whether the event is a stored change of its own (not an update that reflects a message)."""
        return self.type != "conversation_updated" or self.change

    def to_wire(self) -> bytes:
        """Bytes for another process: the header as a JSON array, a newline, then the frame."""
        header = _Header(self.type, self.conv, self.seq, self.change, self.exclude_user, self.msg, self.index)
        return _encoder.encode(header) + b"\n" + self.payload

    @classmethod
    def from_wire(cls, data: bytes) -> Event:
        """The event `to_wire` wrote (msgspec.DecodeError when it is not one)."""
        head, sep, payload = data.partition(b"\n")  # encoded JSON never holds a raw newline
        if not sep:
            raise msgspec.DecodeError("event without a frame separator")
        h = _header_decoder.decode(head)
        return cls(h.type, payload, conv=h.conv, seq=h.seq, change=h.change, exclude_user=h.exclude_user,
                   msg=h.msg, index=h.index)

    def __repr__(self) -> str:
        return f"Event({self.type!r}, conv={self.conv!r}, seq={self.seq!r}, msg={self.msg!r}, index={self.index!r})"


# Builders: one per kind of event, so the frame format is written in one place.

def message_received(message: Message) -> Event:
    """A new user or system message (a stored change)."""
    return Event.frame("message_received", {"message": message, "seq": message.seq},
                       conv=message.conversation_id, seq=message.seq, msg=message.id)


def message_added(message: Message) -> Event:
    """A finished assistant reply (a stored change)."""
    return Event.frame("message_added", {"message": message, "seq": message.seq},
                       conv=message.conversation_id, seq=message.seq, msg=message.id)


def message_event(message: Message) -> Event:
    """The stored change a message is, for replay: `message_added` for a reply, else `message_received`."""
    return message_added(message) if message.is_reply else message_received(message)


def conversation_updated(conversation: Conversation, seq: int, change: bool) -> Event:
    """The sidebar update of every member: a change of its own (`change`), or a new message's echo."""
    return Event.frame("conversation_updated", {"conversation": conversation, "seq": seq},
                       conv=conversation.id, seq=seq, change=change)


def typing_indicator(conversation_id: Id, user_id: Id | str, is_typing: bool, exclude_user: Id | None) -> Event:
    """Someone (or the assistant) started or stopped typing."""
    return Event.frame("typing_indicator", {"conversation_id": conversation_id, "user_id": user_id,
                                            "is_typing": is_typing}, conv=conversation_id, exclude_user=exclude_user)


def stream_start(conversation_id: Id, message_id: Id, assistant_id: str, reply_to: Id) -> Event:
    """A reply began."""
    return Event.frame("stream_start", {"message_id": message_id, "conversation_id": conversation_id,
                                        "assistant_id": assistant_id, "reply_to": reply_to},
                       conv=conversation_id, msg=message_id)


def stream_content(conversation_id: Id, message_id: Id, content: str, index: int) -> Event:
    """One chunk of a reply."""
    return Event.frame("stream_content", {"message_id": message_id, "content": content, "is_complete": False,
                                          "index": index}, conv=conversation_id, msg=message_id, index=index)


def stream_complete(conversation_id: Id, message_id: Id, usage: Usage, finish_reason: str) -> Event:
    """A reply ended normally."""
    return Event.frame("stream_complete", {"message_id": message_id, "usage": usage, "finish_reason": finish_reason},
                       conv=conversation_id, msg=message_id)


def stream_error(conversation_id: Id, message_id: Id, code: str, message: str) -> Event:
    """A reply failed or was stopped."""
    return Event.frame("stream_error", {"message_id": message_id, "code": code, "message": message},
                       conv=conversation_id, msg=message_id)


def stop_request(message_id: Id) -> Event:
    """Ask the process that owns a reply to stop it (control channel; no frame)."""
    return Event("stop", msg=message_id)
