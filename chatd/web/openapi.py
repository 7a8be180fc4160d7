"""`GET /api/v1/openapi.json`: an OpenAPI 3.1 document of every REST route, built from `chatd.web.schemas`.

Each operation names the msgspec types its handler validates and answers with; the JSON
Schemas come from `msgspec.json.schema_components`, so the document describes exactly what the
server accepts. Every error answer is documented with the codes its status can carry
(`schemas.error_codes_by_status`, which reads chatd/errors.py).
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from chatd import __version__
from chatd.web import schemas
from chatd.web.base import ApiHandler

#: How an operation is authenticated: a bearer token, none, or a token only when the server asks for one.
Auth = Literal["bearer", "public", "optional"]

#: What any request may be answered: a body over the limit, an unexpected failure, a database that is away.
ANY_REQUEST = (413, 500, 503)

_STATUS_TEXT = {
    400: "Not valid JSON, or a field or argument that does not fit (the message names it)",
    401: "No bearer token, or a bad or expired one",
    403: "Not allowed",
    404: "Not found",
    405: "The route has no such method",
    409: "Conflicts with the current state",
    413: "The request body is over the size limit",
    429: "Rate limited; `Retry-After` says when to try again",
    500: "An unexpected failure (logged on the server)",
    503: "A dependency (the database, the event bus) is unavailable; try again shortly",
}


@dataclass(frozen=True)
class Operation:
    """One documented route and method: what it takes and what it answers."""

    method: str
    path: str
    summary: str
    answers: dict[int, Any]  # status → msgspec type, or "text" for a text/plain body
    errors: tuple[int, ...] = ()
    auth: Auth = "bearer"
    body: Any = None  # a msgspec Struct (or one Annotated with what it documents besides)
    body_required: bool = False  # without it, an empty body counts as `{}`
    query: type[msgspec.Struct] | None = None
    tags: tuple[str, ...] = field(default=("api",))


_ID = "/api/v1/conversations/{id}"
OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/api/v1/auth/register", "Create an account and get a token",
              {201: schemas.TokenAnswer}, (400, 403, 409, 429), auth="public", body=schemas.Registration,
              body_required=True, tags=("accounts",)),
    Operation("post", "/api/v1/auth/login", "Get a token for an account", {200: schemas.TokenAnswer},
              (400, 401, 403, 429), auth="public", body=schemas.Credentials, body_required=True,
              tags=("accounts",)),
    Operation("get", "/api/v1/me", "The caller", {200: schemas.Me}, (401,), tags=("accounts",)),
    Operation("get", "/api/v1/assistants", "The assistants", {200: schemas.AssistantList}, (400, 401),
              query=schemas.AssistantsQuery, tags=("assistants",)),
    Operation("get", "/api/v1/conversations", "The caller's conversations, newest first",
              {200: schemas.ConversationList}, (400, 401), query=schemas.ConversationsQuery,
              tags=("conversations",)),
    Operation("post", "/api/v1/conversations", "Create a conversation", {201: schemas.ConversationAnswer},
              (400, 401, 404), body=schemas.NewConversation, tags=("conversations",)),
    Operation("get", _ID, "Read a conversation (members only)", {200: schemas.ConversationAnswer},
              (400, 401, 403, 404), tags=("conversations",)),
    Operation("patch", _ID, "Rename, change the assistant or add members, as one change",
              {200: schemas.ConversationAnswer}, (400, 401, 403, 404), body=schemas.DocumentedConversationChange,
              tags=("conversations",)),
    Operation("delete", _ID, "Delete a conversation (its owner)", {200: schemas.ConversationAnswer},
              (400, 401, 403, 404), tags=("conversations",)),
    Operation("get", _ID + "/messages", "Messages, oldest first: the newest `limit` of the window",
              {200: schemas.MessageList}, (400, 401, 403, 404), query=schemas.MessagesQuery,
              tags=("conversations",)),
    Operation("get", "/healthz", "Liveness: 200 while the process serves", {200: schemas.Health},
              auth="public", tags=("operations",)),
    Operation("get", "/readyz", "Readiness: every dependency answers",
              {200: schemas.Readiness, 503: schemas.Readiness}, auth="public", tags=("operations",)),
    Operation("get", "/metrics", "Prometheus metrics (a token only with `metrics_require_token`)",
              {200: "text"}, (401,), auth="optional", tags=("operations",)),
    Operation("get", "/api/v1/openapi.json", "This document", {200: dict[str, Any]}, auth="public",
              tags=("operations",)),
)

_PATH_ID = {"name": "id", "in": "path", "required": True,
            "description": "A conversation id (an integer on SQLite and PostgreSQL, a string on MongoDB)."}


def _status_codes(op: Operation) -> list[int]:
    """Every status the operation documents, in order."""
    return sorted(set(op.answers) | set(op.errors) | set(ANY_REQUEST))


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once: it depends on the code only, never on settings)."""
    codes = schemas.error_codes_by_status()
    errors = {status: schemas.error_answer(status, codes[status])
              for status in sorted({s for op in OPERATIONS for s in _status_codes(op) if s not in op.answers})}
    types: list[Any] = [op.body for op in OPERATIONS if op.body] + [op.query for op in OPERATIONS if op.query]
    types += [t for op in OPERATIONS for t in op.answers.values() if t != "text"] + list(errors.values())
    types.append(schemas.IdIn)
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(map(id, types), refs, strict=True))
    id_schema = ref_of[id(schemas.IdIn)]
    for op in OPERATIONS:  # query arguments are listed one by one as parameters, not referred to
        if op.query is not None:
            components.pop(op.query.__name__, None)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, ref_of, components, errors, id_schema)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatd REST API",
            "version": __version__,
            "description": "The REST half of chatd's protocol (docs/protocol.md §8). The WebSocket "
                           "(`GET /api/v1/chat/ws`) is described in docs/protocol.md, not here. Every error "
                           "is `{error:{code, message}}`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                               "description": "The access token of register or login "
                                                              "(or of the configured identity provider)."}},
        },
    }


def _operation(op: Operation, ref_of: dict[int, Any], components: dict[str, Any],
               errors: dict[int, type[msgspec.Struct]], id_schema: dict[str, Any]) -> dict[str, Any]:
    """One operation object."""
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op), "tags": list(op.tags)}
    params: list[dict[str, Any]] = []
    if "{id}" in op.path:
        params.append({**_PATH_ID, "schema": id_schema})
    if op.query is not None:
        struct = msgspec.json.schema(op.query)["$defs"][op.query.__name__]
        for name, prop in struct["properties"].items():
            prop = copy.deepcopy(prop)
            param = {"name": name, "in": "query", "required": False, "schema": prop}
            if "description" in prop:
                param["description"] = prop.pop("description")
            params.append(param)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "description": "A JSON object" + ("" if op.body_required else
                                                                "; an empty body counts as `{}`") + ".",
                              "content": {"application/json": {"schema": ref_of[id(op.body)]}}}
    if op.auth == "public":
        out["security"] = []
    elif op.auth == "optional":
        out["security"] = [{}, {"bearerAuth": []}]
    responses: dict[str, Any] = {}
    for status in _status_codes(op):
        if status in op.answers:
            answer = op.answers[status]
            if answer == "text":
                content = {"text/plain": {"schema": {"type": "string"}}}
            else:
                content = {"application/json": {"schema": ref_of[id(answer)]}}
            responses[str(status)] = {"description": "OK" if status < 300 else _STATUS_TEXT[status],
                                      "content": content}
        else:
            response: dict[str, Any] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": ref_of[id(errors[status])]}},
            }
            if status == 429:
                response["headers"] = {"Retry-After": {"description": "Seconds to wait",
                                                       "schema": {"type": "integer", "minimum": 1}}}
            responses[str(status)] = response
    out["responses"] = responses
    return out


def _operation_id(op: Operation) -> str:
    """`get_api_v1_conversations_id_messages` and the like."""
    words = [w.strip("{}") for w in op.path.replace(".", "_").split("/") if w]
    return "_".join([op.method, *words])


class OpenApiHandler(ApiHandler):
    """GET /api/v1/openapi.json (public)."""

    public = True

    def get(self) -> None:
        """The document."""
        self.send_json(document())
