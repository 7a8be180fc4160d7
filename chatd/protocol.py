"""Wire protocol v1: client frame schemas, decoding with precise errors, close codes."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from chatd.errors import InvalidJSON, InvalidMessage, UnknownType
from chatd.models import Id

# Close codes chatd sends itself (PROTOCOL.md §5). Tornado closes a frame larger than
# `websocket_max_message_size` with 1009 on its own.
CLOSE_AUTH = 4001
CLOSE_ABUSE = 1008
CLOSE_GOING_AWAY = 1001

MessageType = Literal["user", "assistant", "system"]


class JoinConversation(msgspec.Struct):
    """`join_conversation` data."""

    conversation_id: Id
    since_seq: int | None = None


class LeaveConversation(msgspec.Struct):
    """`leave_conversation` data."""

    conversation_id: Id


class SendMessage(msgspec.Struct):
    """`send_message` data."""

    conversation_id: Id
    content: Annotated[str, msgspec.Meta(min_length=1)]
    message_type: MessageType = "user"
    client_msg_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    assistant_id: str | None = None


class StreamResponse(msgspec.Struct):
    """`stream_response` data."""

    conversation_id: Id
    message_id: Id
    assistant_id: str | None = None


class Typing(msgspec.Struct):
    """`typing` data."""

    conversation_id: Id
    is_typing: bool


class TypingToggle(msgspec.Struct):
    """`typing_start` / `typing_stop` data."""

    conversation_id: Id


class StopGeneration(msgspec.Struct):
    """`stop_generation` data."""

    message_id: Id


class Ping(msgspec.Struct):
    """`ping` data: anything, echoed back."""


SCHEMAS: dict[str, type[msgspec.Struct] | None] = {
    "auth": None,
    "join_conversation": JoinConversation,
    "leave_conversation": LeaveConversation,
    "send_message": SendMessage,
    "stream_response": StreamResponse,
    "typing": Typing,
    "typing_start": TypingToggle,
    "typing_stop": TypingToggle,
    "stop_generation": StopGeneration,
    "ping": None,
}

_json_decoder = msgspec.json.Decoder()


class ClientFrame(msgspec.Struct):
    """A decoded client frame: its type, validated data (or raw dict), and ref."""

    type: str
    data: Any
    ref: str | None
    raw: dict


def decode_json(text: str | bytes) -> dict:
    """Parse a frame's JSON; anything but an object is INVALID_JSON."""
    try:
        obj = _json_decoder.decode(text)
    except msgspec.DecodeError as e:
        raise InvalidJSON(f"Frame is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise InvalidJSON("Frame must be a JSON object")
    return obj


def peek_ref(obj: dict) -> str | None:
    """The frame's `ref` if it is a valid one (≤ 64 chars), else None."""
    ref = obj.get("ref")
    if isinstance(ref, str) and len(ref) <= 64:
        return ref
    return None


def decode_frame(obj: dict) -> ClientFrame:
    """Validate one parsed client frame (see `decode_json`): type, then schema."""
    ftype = obj.get("type")
    if not isinstance(ftype, str):
        raise InvalidMessage("Field `type` is required and must be a string")
    if ftype not in SCHEMAS:
        raise UnknownType(f"Unknown frame type: {ftype[:64]}")
    ref = obj.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= 64):
        raise InvalidMessage("Field `ref` must be a string of at most 64 characters")
    schema = SCHEMAS[ftype]
    raw_data = obj.get("data")
    if ftype == "auth":
        return ClientFrame(type=ftype, data=raw_data, ref=ref, raw=obj)
    if ftype == "ping":
        return ClientFrame(type=ftype, data={} if raw_data is None else raw_data, ref=ref, raw=obj)
    if not isinstance(raw_data, dict):
        raise InvalidMessage("Field `data` is required and must be an object")
    assert schema is not None
    try:
        data = msgspec.convert(raw_data, schema, strict=True)
    except msgspec.ValidationError as e:
        raise InvalidMessage(_describe(e)) from e
    return ClientFrame(type=ftype, data=data, ref=ref, raw=obj)


def _describe(e: msgspec.ValidationError) -> str:
    """Rewrite msgspec's `$.field` path as `data.field` so the message names the field."""
    return str(e).replace("`$.", "`data.").replace("`$`", "`data`")
