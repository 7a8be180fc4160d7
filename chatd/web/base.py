"""The base REST handler: services from application settings, bearer auth, JSON errors."""
from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import tornado.httputil
import tornado.web

from chatd import inputs
from chatd.addresses import client_address
from chatd.auth import PasswordHasher, Principal, TokenService
from chatd.chat import ChatService
from chatd.config import Settings
from chatd.errors import AuthError, ChatdError, InvalidJSON, InvalidMessage, MessageTooLong, Unauthorized
from chatd.metrics import Metrics
from chatd.plugins import PluginRegistry
from chatd.store import Store
from chatd.web import schemas

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class Services:
    """Typed access to the services kept in the Tornado application settings."""

    settings: dict
    request: tornado.httputil.HTTPServerRequest

    @property
    def client_ip(self) -> str:
        """The client's address: the peer's, or the forwarded one when the peer is a trusted proxy."""
        return client_address(self.request, self.settings["trusted_proxies"])

    @property
    def config(self) -> Settings:
        """The validated chatd settings."""
        return self.settings["chatd_settings"]

    @property
    def chat(self) -> ChatService:
        """The domain service."""
        return self.settings["chat"]

    @property
    def store(self) -> Store:
        """The store."""
        return self.settings["store"]

    @property
    def tokens(self) -> TokenService:
        """JWT issue/verify."""
        return self.settings["tokens"]

    @property
    def passwords(self) -> PasswordHasher:
        """Password hashing."""
        return self.settings["passwords"]

    @property
    def plugins(self) -> PluginRegistry:
        """Plugins, providers and assistants."""
        return self.settings["plugins"]

    @property
    def metrics(self) -> Metrics:
        """Prometheus metrics."""
        return self.settings["metrics"]


#: The largest body an API request may declare and still get its 413 after the body was read:
#: reading and dropping it costs bandwidth, not memory. Above it the 413 goes out at once and the
#: connection closes, which a client that sends its whole body before reading sees as a reset.
DRAIN_BODY_BYTES = 64 << 20

_VERBS = ("get", "post", "put", "patch", "delete", "head", "options")

S = TypeVar("S", bound=msgspec.Struct)


def body_limit(config: Settings) -> int:
    """The largest REST request body accepted (bytes)."""
    return max(config.max_frame_bytes, 1 << 20)


def _admitted(verb: Callable[..., Any]) -> Callable[..., Any]:
    """`verb`, run only after `ApiHandler.admit` (body size, then bearer auth) let the request in."""

    @functools.wraps(verb)
    async def run(self: ApiHandler, *args: Any, **kwargs: Any) -> None:
        await self.admit()
        result = verb(self, *args, **kwargs)
        if inspect.isawaitable(result):
            await result

    run.admits = True  # type: ignore[attr-defined]
    return run


@tornado.web.stream_request_body
class ApiHandler(Services, tornado.web.RequestHandler):
    """JSON API handler, authenticated by default (set `public = True` to opt out).

    The body streams in (`data_received`) and is kept only up to `body_limit`, so an oversized
    one is never held in memory. Every answer, errors included, goes out once the body has been
    read: a client that sends its whole body before it reads (urllib, requests) would otherwise
    get a reset instead of the answer. Tornado runs nothing between the body and the verb, so
    each verb of a subclass is wrapped to call `admit` first.
    """

    public = False
    principal: Principal

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _VERBS:
            verb = getattr(cls, name)
            if not getattr(verb, "admits", False):
                setattr(cls, name, _admitted(verb))

    def set_default_headers(self) -> None:
        """JSON responses are never cached and never sniffed."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        """Bearer tokens, not cookies: no XSRF cookie to check."""

    def prepare(self) -> None:
        """Before the body: decide how much of it to read (an oversized one is read, dropped, then refused)."""
        self._limit = body_limit(self.config)
        self._chunks: list[bytes] = []
        self._received = 0
        connection: Any = self.request.connection
        declared = _content_length(self.request.headers)
        if declared is not None and declared > self._limit and (
                declared > DRAIN_BODY_BYTES or self.request.headers.get("Expect", "").lower() == "100-continue"):
            # Answered now (a client waiting for "100 Continue" sends nothing more, so this is clean for
            # it), and the connection closes after the answer. Tornado would answer a body it thinks too
            # long with a bare 400 of its own after ours: it is told the body is not.
            connection.set_max_body_size(declared)
            raise MessageTooLong(f"Request body exceeds {self._limit} bytes")
        connection.set_max_body_size(DRAIN_BODY_BYTES)

    def data_received(self, chunk: bytes) -> None:
        """Keep the body while it is within the limit; past it, only count what arrives."""
        self._received += len(chunk)
        if self._received <= self._limit:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()

    async def admit(self) -> None:
        """After the body: refuse it if oversized, then authenticate unless the route is public."""
        if self._received > self._limit:
            raise MessageTooLong(f"Request body exceeds {self._limit} bytes")
        self.request.body = b"".join(self._chunks)
        self._chunks.clear()
        if self.public:
            return
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Missing bearer token")
        try:
            self.principal = await self.tokens.verify(token.strip())
        except AuthError as e:
            raise Unauthorized(str(e)) from None

    def body(self, schema: type[S]) -> S:
        """The body as `schema` (an empty body is `{}`): INVALID_JSON unless a JSON object nested at most
        `inputs.MAX_DEPTH` deep, INVALID_MESSAGE naming the field that does not fit.

        The values the handler gets are checked against `chatd.inputs`' limits (64-bit integers, valid
        Unicode); fields the schema does not name are ignored, whatever they hold.
        """
        obj = inputs.parse(self.request.body) if self.request.body else {}
        if not isinstance(obj, dict):
            raise InvalidJSON("Request body must be a JSON object")
        try:
            value = msgspec.convert(obj, schema, strict=True)
        except msgspec.ValidationError as e:
            raise InvalidMessage(schemas.describe(e)) from e
        except UnicodeEncodeError as e:  # msgspec encodes each key to match it with a field name
            raise InvalidMessage("A key in `$` is not valid Unicode (it holds a lone surrogate)") from e
        inputs.check_value(msgspec.to_builtins(value))
        return value

    def query(self, schema: type[S]) -> S:
        """The query arguments `schema` names (text decoded laxly: `"5"` is 5; empty ones are absent);
        INVALID_MESSAGE naming the argument that does not fit."""
        values = {}
        for name in schema.__struct_fields__:
            text = self.get_query_argument(name, None)  # invalid UTF-8 is Tornado's 400
            if text:
                values[name] = text
        try:
            return msgspec.convert(values, schema, strict=False)
        except msgspec.ValidationError as e:
            raise InvalidMessage(schemas.describe(e, "Query argument")) from e

    def send_json(self, obj: Any, status: int = 200) -> None:
        """Write a JSON answer (dicts, lists and msgspec records: `chatd.models`, `chatd.web.schemas`)."""
        self.set_status(status)
        self.finish(_encoder.encode(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error is `{error:{code, message}}`; no traceback ever reaches the client."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ChatdError):
            # Tornado answers an exception that is not an HTTPError with 500; ours name their status.
            self.set_status(exc.http_status)
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(max(1, int(exc.retry_after + 0.999))))
            body = {"code": exc.code, "message": exc.message}
        elif isinstance(exc, tornado.web.HTTPError):
            if status_code == 405:
                self.set_header("Allow", ", ".join(self.allowed_methods()))  # RFC 9110 asks for it
            code = schemas.TORNADO_ERROR_CODES.get(status_code, "INTERNAL_ERROR")
            body = {"code": code, "message": exc.log_message or self._reason}
        else:
            body = {"code": "INTERNAL_ERROR", "message": "Internal error"}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": body}))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this route implements (for `Allow`)."""
        unimplemented = tornado.web.RequestHandler._unimplemented_method
        return [name.upper() for name in _VERBS
                if getattr(getattr(cls, name), "__wrapped__", unimplemented) is not unimplemented]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors are not logged with tracebacks; unexpected ones are."""
        if isinstance(value, ChatdError):
            return
        super().log_exception(typ, value, tb)


def _content_length(headers: tornado.httputil.HTTPHeaders) -> int | None:
    """The declared body length; None when there is none or it is malformed (Tornado refuses those itself)."""
    text = headers.get("Content-Length", "").split(",")[0].strip()
    return int(text) if text.isascii() and text.isdigit() else None


class NotFoundHandler(ApiHandler):
    """JSON 404 for unknown API paths."""

    public = True

    def _missing(self, *args: Any) -> None:
        raise tornado.web.HTTPError(404, "No such endpoint")

    get = post = put = patch = delete = head = options = _missing


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line, with the client's own address behind a trusted proxy (never the query string)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    client = client_address(request, handler.settings["trusted_proxies"])
    logging.getLogger("tornado.access").log(level, "%d %s %s (%s) %.2fms", status, request.method, request.path,
                                            client, 1000.0 * request.request_time())
