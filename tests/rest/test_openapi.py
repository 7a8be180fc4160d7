"""`GET /api/v1/openapi.json`: a valid OpenAPI 3.1 document that lists exactly the routes the server has."""
from __future__ import annotations

import re

import msgspec
import pytest
import tornado.web
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from chatd.models import Conversation
from chatd.web import openapi, schemas
from chatd.web.base import ApiHandler

#: Routes of the application table that are not REST: the WebSocket, the page, the catch-all 404s.
NOT_REST = {r"/api/v1/chat/ws", r"/(.*)", r"/api/.*"}


def route_path(pattern: str) -> str:
    """A Tornado route as an OpenAPI path (a capture group is the conversation `{id}`)."""
    return pattern.replace("([^/]+)", "{id}").replace(r"\.", ".")


def app_routes(chatd) -> dict[str, type]:
    out = {}
    for rule in chatd.server.app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern.rstrip("$")
        if pattern not in NOT_REST:
            out[route_path(pattern)] = rule.target
    return out


@pytest.mark.asyncio
async def test_the_document_is_public_valid_openapi_31(chatd):
    status, doc, headers = await chatd.request("GET", "/api/v1/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert doc["openapi"] == "3.1.0"
    OPENAPI_31_VALIDATOR.validate(doc)
    assert doc == msgspec.json.decode(msgspec.json.encode(openapi.document()))
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert doc["security"] == [{"bearerAuth": []}]


@pytest.mark.asyncio
async def test_every_route_and_method_is_documented_and_nothing_else(chatd):
    routes = app_routes(chatd)
    doc = openapi.document()
    assert set(doc["paths"]) == set(routes)
    for path, handler in routes.items():
        assert issubclass(handler, ApiHandler), path
        implemented = [m.lower() for m in handler.allowed_methods()]
        assert sorted(doc["paths"][path]) == sorted(implemented), path


@pytest.mark.asyncio
async def test_documented_authentication_is_what_the_server_does(chatd):
    for op in openapi.OPERATIONS:
        path = op.path.replace("{id}", "1")
        status, body, _ = await chatd.request(op.method.upper(), path, body={} if op.body else None)
        if op.auth == "bearer":
            assert status == 401, (op.method, op.path, body)
        else:
            assert status != 401 and 401 not in op.answers, (op.method, op.path, status)


def test_each_answer_and_error_is_its_msgspec_type():
    doc = openapi.document()
    components = doc["components"]["schemas"]
    codes = schemas.error_codes_by_status()
    for op in openapi.OPERATIONS:
        responses = doc["paths"][op.path][op.method]["responses"]
        assert set(responses) == {str(s) for s in openapi._status_codes(op)}, op.path
        for status, response in responses.items():
            if int(status) in op.answers:
                continue
            name = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            detail = components[name]["properties"]["error"]["$ref"].rsplit("/", 1)[1]
            assert components[detail]["properties"]["code"]["enum"] == codes[int(status)], (op.path, status)
        if op.body is not None:
            ref = doc["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            struct = getattr(op.body, "__origin__", op.body)
            assert ref == f"#/components/schemas/{struct.__name__}"
            assert components[struct.__name__] == msgspec.json.schema(struct)["$defs"][struct.__name__]
    # The error codes a status carries come from chatd/errors.py (and Tornado's own errors).
    assert codes[400] == ["INVALID_JSON", "INVALID_MESSAGE", "UNKNOWN_TYPE"]
    assert codes[401] == ["UNAUTHORIZED"] and codes[413] == ["MESSAGE_TOO_LONG"]
    assert "CANCELLED" not in {c for cs in codes.values() for c in cs}  # a stream_error code only


def test_public_conversation_is_the_stored_one_without_seq():
    assert set(schemas.PublicConversation.__struct_fields__) == set(Conversation.__struct_fields__) - {"seq"}


def test_operation_ids_are_unique():
    ids = [openapi._operation_id(op) for op in openapi.OPERATIONS]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)


def test_a_verb_a_handler_does_not_define_is_tornados_405():
    # ApiHandler.allowed_methods tells the two apart this way.
    assert tornado.web.RequestHandler.get is tornado.web.RequestHandler._unimplemented_method
    assert openapi.OpenApiHandler.allowed_methods() == ["GET"]
