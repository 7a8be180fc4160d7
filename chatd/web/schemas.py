"""The REST API's request bodies, query arguments and answers as msgspec types.

The same types validate what a client sends (`ApiHandler.body` / `ApiHandler.query`) and
generate `GET /api/v1/openapi.json` (`chatd.web.openapi`), so the document cannot drift from
what the server accepts. Bodies decode strictly (a string is never taken for a number); query
arguments, which are always text, decode laxly (`"5"` is the integer 5).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from chatd import errors
from chatd.inputs import INT64_MAX, INT64_MIN
from chatd.models import Conversation, Id, Message

#: The most user ids one request may name in `member_ids` (each is looked up before the change).
MAX_MEMBER_IDS = 100

#: The longest title a conversation may have (characters).
MAX_TITLE_CHARS = 200

#: The shortest password register accepts (characters).
MIN_PASSWORD_CHARS = 8

#: Usernames register accepts. JSON Schema's `$` ends the text; Python's `$` also matches before a
#: final newline, so the server checks with `USERNAME.fullmatch` besides the schema's pattern.
USERNAME_PATTERN = "^[A-Za-z0-9_.@-]{1,64}$"
USERNAME = re.compile(USERNAME_PATTERN)

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX, extra_json_schema={"format": "int64"})]
PositiveInt64 = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX, extra_json_schema={"format": "int64"})]

#: An id a client sends: an integer (SQLite, PostgreSQL) or a non-empty string (MongoDB).
IdIn = Int64 | Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

MemberIds = Annotated[list[IdIn], msgspec.Meta(
    max_length=MAX_MEMBER_IDS, description=f"User ids to add as members (at most {MAX_MEMBER_IDS}).")]


# Request bodies.

class Credentials(msgspec.Struct):
    """`POST /api/v1/auth/login`: an existing account's name and password."""

    username: str
    password: str


class Registration(msgspec.Struct):
    """`POST /api/v1/auth/register`: a new account's name and password."""

    username: Annotated[str, msgspec.Meta(pattern=USERNAME_PATTERN,
                                          description="1-64 of A-Z a-z 0-9 _ . @ -")]
    password: Annotated[str, msgspec.Meta(min_length=MIN_PASSWORD_CHARS)]


class NewConversation(msgspec.Struct):
    """`POST /api/v1/conversations`: every field optional."""

    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE_CHARS,
                                       description="Empty or absent: `New conversation`.")] | None = None
    assistant_id: Annotated[str, msgspec.Meta(description="Absent: the default assistant.")] | None = None
    member_ids: MemberIds | None = None


class ConversationChange(msgspec.Struct):
    """`PATCH /api/v1/conversations/{id}`: at least one of the fields, applied as one change."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE_CHARS)] | None = None
    assistant_id: str | None = None
    member_ids: MemberIds | None = None


#: `ConversationChange` as documented: the handler's rule that a change must change something
#: (`INVALID_MESSAGE` otherwise) written as JSON Schema, which msgspec does not check itself.
DocumentedConversationChange = Annotated[ConversationChange, msgspec.Meta(extra_json_schema={"anyOf": [
    {"required": ["title"], "properties": {"title": {"type": "string"}}},
    {"required": ["assistant_id"], "properties": {"assistant_id": {"type": "string"}}},
    {"required": ["member_ids"], "properties": {"member_ids": {"type": "array", "minItems": 1}}},
]})]


# Query arguments. An optional integer is UNSET when absent: decoded laxly, `None` would also
# take the text "null", which no client means as "absent".

class AssistantsQuery(msgspec.Struct):
    """`GET /api/v1/assistants` arguments."""

    refresh: Annotated[str, msgspec.Meta(
        description="Anything but empty, `0` or `false`: ask the providers which models they serve first."
    )] | None = None


class ConversationsQuery(msgspec.Struct):
    """`GET /api/v1/conversations` arguments."""

    limit: Annotated[PositiveInt64, msgspec.Meta(description="At most 200 are returned.")] = 50
    before: Annotated[str, msgspec.Meta(description="The `updated_at` of the last conversation seen.")] | None = None
    before_id: Annotated[str, msgspec.Meta(
        description="The `id` of the last conversation seen (with `before`: ties are neither skipped nor repeated).")
    ] | None = None


class MessagesQuery(msgspec.Struct):
    """`GET /api/v1/conversations/{id}/messages` arguments."""

    limit: Annotated[PositiveInt64, msgspec.Meta(description="At most 500 are returned.")] = 50
    before_seq: Annotated[Int64, msgspec.Meta(description="Only messages with a smaller `seq`.")] \
        | msgspec.UnsetType = msgspec.UNSET
    after_seq: Annotated[Int64, msgspec.Meta(description="Only messages with a greater `seq`.")] \
        | msgspec.UnsetType = msgspec.UNSET


# Answers.

class UserRef(msgspec.Struct):
    """A user as register and login name it."""

    id: Id
    username: str


class TokenAnswer(msgspec.Struct):
    """The register/login answer: the user and a fresh access token."""

    user: UserRef
    access_token: str
    token_type: Literal["bearer"]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds the token is valid.")]


class Me(msgspec.Struct):
    """`GET /api/v1/me`: the caller, with the account's roles and the token's."""

    id: Id
    username: str
    roles: list[str]


class AssistantInfo(msgspec.Struct):
    """One assistant as listed."""

    id: str
    name: str
    provider: Annotated[str, msgspec.Meta(description="The provider type, e.g. `demo`, `openai`.")]
    model: str
    default: bool


class AssistantList(msgspec.Struct):
    """`GET /api/v1/assistants`: exactly one has `default: true`."""

    assistants: list[AssistantInfo]


class PublicConversation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A conversation as the REST API shows it: `chatd.models.Conversation` without `seq` (the WebSocket's business)."""

    id: Id
    title: str
    owner_id: Id
    member_ids: list[Id]
    assistant_id: str
    created_at: str
    updated_at: str
    last_message: Message | None = None
    deleted: bool = False

    @classmethod
    def of(cls, conv: Conversation) -> PublicConversation:
        """The public view of a stored conversation."""
        return cls(**{name: getattr(conv, name) for name in cls.__struct_fields__})


class ConversationAnswer(msgspec.Struct):
    """One conversation."""

    conversation: PublicConversation


class ConversationList(msgspec.Struct):
    """The caller's conversations, newest `updated_at` first."""

    conversations: list[PublicConversation]


class MessageList(msgspec.Struct):
    """Messages oldest first; replies still streaming last, with `seq` null."""

    messages: list[Message]


class Health(msgspec.Struct):
    """`GET /healthz`."""

    status: Literal["ok"]


class Readiness(msgspec.Struct, omit_defaults=True):
    """`GET /readyz`: each dependency's state (`ok`, `failed`, or for a provider why it is not ok)."""

    store: Literal["ok", "failed"]
    bus: Literal["ok", "failed"]
    providers: dict[str, str]
    shutting_down: bool = False


# Errors.

def error_codes_by_status() -> dict[int, list[str]]:
    """Every error code the REST API answers, by HTTP status: chatd/errors.py's mapping, and Tornado's own errors."""
    found: dict[int, set[str]] = {}
    todo: list[type[errors.ChatdError]] = [errors.ChatdError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.code != "CANCELLED":  # in `stream_error` only
            found.setdefault(cls.http_status, set()).add(cls.code)
    for status, code in TORNADO_ERROR_CODES.items():
        found.setdefault(status, set()).add(code)
    return {status: sorted(codes) for status, codes in sorted(found.items())}


#: The codes `ApiHandler.write_error` gives Tornado's own HTTP errors (no route, no such method, a bad request line).
TORNADO_ERROR_CODES = {400: "INVALID_MESSAGE", 404: "NOT_FOUND", 405: "INVALID_MESSAGE", 413: "MESSAGE_TOO_LONG"}


def error_answer(status: int, codes: list[str]) -> type[msgspec.Struct]:
    """The `{error:{code, message}}` type of one HTTP status, its code one of `codes`."""
    detail = msgspec.defstruct(f"Error{status}Detail", [("code", Literal[tuple(codes)]), ("message", str)])
    return msgspec.defstruct(f"Error{status}", [("error", detail)])


# Validation errors as messages that name the field.

_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]*)`(?: - at `\$(?P<at>[^`]*)`)?")
_AT = re.compile(r"(?P<what>.*) - at `\$(?P<at>[^`]*)`", re.S)


def describe(error: msgspec.ValidationError, what: str = "Field") -> str:
    """msgspec's message with the field named first: "Field `member_ids[0]`: Expected `int | str`, got `bool`"."""
    text = str(error)
    if m := _MISSING.fullmatch(text):
        return f"{what} `{_join(m['at'] or '', m['field'])}` is required"
    if m := _AT.fullmatch(text):
        return f"{what} `{_join(m['at'], '')}`: {m['what']}"
    return text


def _join(at: str, field: str) -> str:
    """`.a.b` and `c` → `a.b.c`."""
    path = at.lstrip(".")
    if field:
        path = f"{path}.{field}" if path else field
    return path or "$"

