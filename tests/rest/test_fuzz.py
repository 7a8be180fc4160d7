"""A hypothesis-driven fuzz of the REST API: bodies, paths, query arguments, methods and tokens.

Seeded and bounded (REQUESTS requests, no shrinking: every answer is recorded and judged after
the run, so one run reports every problem at once). Each answer must be one the OpenAPI document
lists for that route and method (an undeclared method: 405; an unknown path: 404), an error
must carry a code documented for its status, and every body must decode as the msgspec type the
document was built from. No 5xx, no dropped connection, no traceback in the server's log, and a
healthy server afterwards.
"""
from __future__ import annotations

import http.client
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from chatd.web import openapi, schemas

REQUESTS = 1500
SEED = 20261202

BY_PATH: dict[str, dict[str, openapi.Operation]] = {}
for _op in openapi.OPERATIONS:
    BY_PATH.setdefault(_op.path, {})[_op.method.upper()] = _op
UNKNOWN_PATHS = ["/api/v1/nope", "/api/v2/conversations", "/api/v1/conversations/{id}/nope", "/api/v1/auth",
                 "/api/v1/me/{id}"]
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"]
CODES = schemas.error_codes_by_status()
ERROR_TYPES = {status: schemas.error_answer(status, codes) for status, codes in CODES.items()}


# Values.

special_ints = st.sampled_from([0, 1, 2, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**40)])
ints = st.one_of(special_ints, st.integers(-(2**70), 2**70), st.integers(-5, 5))
special_texts = st.sampled_from(["", " ", "\ud800", "a\udfffb", "\udbff\udc00", "\x00", "²", "١٢", "null", "true",
                                 "1e3", " 5", "5 ", "%", "demo", "nope", "x" * 201, "é" * 65, "\n", "alice\n"])
texts = st.one_of(special_texts, st.text(max_size=24))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=10)
usernames = st.one_of(st.from_regex(r"\A[A-Za-z0-9_.@-]{1,64}\Z"), texts, ints)
member_ids = st.one_of(
    st.lists(st.one_of(st.integers(1, 4), ints, texts, st.booleans(), st.none(), st.floats(allow_nan=False)),
             max_size=6),
    st.integers(95, 130).map(lambda n: list(range(1, n + 1))),  # around the cap
    json_values)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "username": usernames,
    "password": st.one_of(st.text(min_size=8, max_size=20), texts, ints),
    "title": st.one_of(texts, st.text(min_size=1, max_size=200), json_values),
    "assistant_id": st.one_of(st.just("demo"), texts, json_values),
    "member_ids": member_ids,
}


# Requests.

@dataclass
class Req:
    """One request, and what it was made from."""

    method: str
    template: str
    path: str
    body: bytes | None
    auth: str


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "1" + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


@st.composite
def bodies(draw: st.DrawFn, op: openapi.Operation | None) -> bytes | None:
    kind = draw(st.sampled_from(["shaped"] * 6 + ["none", "json", "deep", "raw", "huge"]))
    if kind == "none":
        return None
    if kind == "shaped" and op is not None and op.body is not None:
        struct = op.body.__origin__ if hasattr(op.body, "__origin__") else op.body  # Annotated → the Struct
        names = draw(st.lists(st.sampled_from(struct.__struct_fields__), unique=True, max_size=3))
        obj: dict[str, Any] = {name: draw(FIELDS[name]) for name in names}
        obj.update(draw(st.dictionaries(texts, json_values, max_size=2)))
        return json.dumps(obj).encode()
    if kind in ("shaped", "json"):
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 100, 999, 1000, 5000]))
        return nested(depth, draw(st.sampled_from(["array", "object"]))).encode()
    if kind == "raw":
        return draw(st.one_of(st.binary(max_size=40), st.sampled_from(
            [b"{", b"[1,]", b"NaN", b'{"a":1}x', b"\xff", b'{"title": "\xff"}', b'"\\ud800"', b"   ", b"{}" * 3])))
    return b" " * ((1 << 20) + 1)  # over the body limit by one byte


@st.composite
def requests(draw: st.DrawFn, conversation_id: int) -> Req:
    template = draw(st.sampled_from(sorted(BY_PATH) * 4 + UNKNOWN_PATHS))
    declared = BY_PATH.get(template, {})
    method = draw(st.sampled_from(sorted(declared) * 12 + METHODS)) if declared else draw(st.sampled_from(METHODS))
    op = declared.get(method)
    path = template
    if "{id}" in template:
        pid = draw(st.one_of(
            st.just(str(conversation_id)), st.integers(1, 5).map(str), ints.map(str),
            texts.filter(bool).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
            st.sampled_from(["%C2%B2", "%D9%A1", "%ED%A0%80", "%00", "%FF", "%2F", "%25", "%zz", "..", "1.5"])))
        path = template.replace("{id}", pid)
    if op is not None and op.query is not None or draw(st.booleans()):
        names = list(op.query.__struct_fields__) if op is not None and op.query is not None else []
        keys = draw(st.lists(st.sampled_from(names + ["x", "limit", "token"]), max_size=3))
        values = [draw(st.one_of(ints.map(str), texts.map(lambda t: quote(t.encode("utf-8", "surrogatepass"))),
                                 st.sampled_from(["%FF", "%ED%A0%80", "1.0", "1e2", "-0", "0x10", "%C2%B2"])))
                  for _ in keys]
        if keys:
            path += "?" + "&".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
    body = draw(bodies(op)) if method in ("POST", "PATCH", "PUT") or draw(st.integers(0, 9)) == 0 else None
    auth = draw(st.sampled_from(["token"] * 12 + ["none", "garbage", "basic", "expired-looking"]))
    return Req(method, template, path, body, auth)


# Judging an answer.

def allowed_statuses(req: Req) -> set[int]:
    """What the document says this request may be answered."""
    declared = BY_PATH.get(req.template)
    if declared is None:
        return {404, 413}
    op = declared.get(req.method)
    if op is None:  # an undeclared method: authentication, and decoding the path's id, come first
        needs_token = any(o.auth == "bearer" for o in declared.values())
        return {405, 413} | ({401} if needs_token else set()) | ({400} if "{id}" in req.template else set())
    return set(openapi._status_codes(op))


def judge(req: Req, status: int, headers: dict[str, str], data: bytes) -> str | None:
    """Why the answer is not a documented one, or None; also checks every body's type."""
    if status not in allowed_statuses(req):
        return f"status {status} not documented"
    if req.method == "HEAD":
        return None  # no body to look at
    op = BY_PATH.get(req.template, {}).get(req.method)
    if status < 400 and op is not None:
        answer = op.answers[status]
        if answer == "text":
            return None if headers.get("content-type", "").startswith("text/plain") else "not text/plain"
        kind = answer
    else:
        kind = ERROR_TYPES.get(status)
        if kind is None:
            return f"no error type for {status}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content type {headers.get('content-type')!r}"
    try:
        msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as e:
        return f"body does not fit {getattr(kind, '__name__', kind)}: {e}"
    if status == 405 and "allow" not in headers:
        return "405 without Allow"
    return None


def send(port: int, req: Req, tokens: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
    """The answer (status, lower-cased headers, body), or None when the connection dropped without one."""
    headers = {"Content-Type": "application/json"}
    if req.auth != "none":
        headers["Authorization"] = tokens[req.auth]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(req.method, req.path, body=req.body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_rest_fuzz_answers_only_documented_codes(live_chatd):
    port = live_chatd.server.port
    tokens = {"token": f"Bearer {live_chatd.token}", "garbage": "Bearer not.a.token", "basic": "Basic YTpi",
              "expired-looking": "Bearer " + live_chatd.token[:-6] + "AAAAAA"}
    answers: Counter[str] = Counter()
    problems: list[str] = []
    dropped: list[Req] = []

    @seed(SEED)
    @settings(max_examples=REQUESTS, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=requests(live_chatd.conversation_id))
    def fuzz(req: Req) -> None:
        got = send(port, req, tokens)
        if got is None:
            dropped.append(req)
            return
        status, headers, data = got
        code = "(HEAD: no body)" if req.method == "HEAD" else ""
        if status >= 400 and req.method != "HEAD":
            try:
                code = json.loads(data)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
        answers[f"{status} {code}".strip()] += 1
        why = judge(req, status, headers, data)
        if why is not None:
            problems.append(f"{req.method} {req.path[:120]} body={req.body[:120] if req.body else None!r} "
                            f"auth={req.auth} → {status} {data[:200]!r}: {why}")

    fuzz()
    tried = sum(answers.values()) + len(dropped)
    server_errors = sum(n for key, n in answers.items() if key.startswith("5"))
    print(f"\nREST fuzz: {tried} requests; answers {dict(sorted(answers.items()))}; 5xx {server_errors}; "
          f"dropped {len(dropped)}; log problems {len(live_chatd.problems())}")
    assert tried == REQUESTS
    assert not dropped, dropped[:5]
    assert not problems, "\n".join(problems[:20])
    assert server_errors == 0
    assert live_chatd.problems() == []
    # It reached the answers that matter, not just one kind of refusal.
    seen = {key.split()[0] for key in answers}
    assert {"200", "201", "400", "401", "403", "404", "405", "413"} <= seen, answers
    assert {"400 INVALID_JSON", "400 INVALID_MESSAGE"} <= set(answers), answers
    live_chatd.assert_healthy()
