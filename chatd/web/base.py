"""The base REST handler: services from application settings, bearer auth, JSON errors."""
from __future__ import annotations

import json
import logging
from typing import Any, overload

import msgspec
import tornado.httputil
import tornado.web

from chatd.addresses import client_address
from chatd.auth import PasswordHasher, Principal, TokenService
from chatd.chat import ChatService
from chatd.config import Settings
from chatd.errors import AuthError, ChatdError, InvalidJSON, InvalidMessage, MessageTooLong, Unauthorized
from chatd.metrics import Metrics
from chatd.plugins import PluginRegistry
from chatd.store import Store

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


class ApiHandler(Services, tornado.web.RequestHandler):
    """JSON API handler, authenticated by default (set `public = True` to opt out)."""

    public = False
    principal: Principal

    def set_default_headers(self) -> None:
        """JSON responses are never cached and never sniffed."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        """Bearer tokens, not cookies: no XSRF cookie to check."""

    async def prepare(self) -> None:
        """Refuse oversized bodies, then authenticate unless the route is public."""
        limit = max(self.config.max_frame_bytes, 1 << 20)
        if len(self.request.body or b"") > limit:
            raise MessageTooLong(f"Request body exceeds {limit} bytes")
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

    def json_body(self) -> dict:
        """The request body as a JSON object (INVALID_JSON otherwise)."""
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as e:
            raise InvalidJSON("Request body is not valid JSON") from e
        if not isinstance(body, dict):
            raise InvalidJSON("Request body must be a JSON object")
        return body

    def field(self, body: dict, name: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
        """A typed field of the body; INVALID_MESSAGE naming it when wrong."""
        if name not in body or body[name] is None:
            if required:
                raise InvalidMessage(f"Field `{name}` is required")
            return None
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidMessage(f"Field `{name}` has the wrong type")
        return value

    @overload
    def int_arg(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int: ...

    @overload
    def int_arg(self, name: str, default: None = None, minimum: int | None = None,
                maximum: int | None = None) -> int | None: ...

    def int_arg(self, name: str, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        """An integer query argument; INVALID_MESSAGE naming it when not one."""
        text = self.get_query_argument(name, None)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise InvalidMessage(f"Query argument `{name}` must be an integer") from None
        if minimum is not None and value < minimum:
            raise InvalidMessage(f"Query argument `{name}` must be at least {minimum}")
        if maximum is not None and value > maximum:
            value = maximum
        return value

    def send_json(self, obj: Any, status: int = 200) -> None:
        """Write a JSON answer (dicts, lists and the msgspec records of `chatd.models`)."""
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
            codes = {404: "NOT_FOUND", 405: "INVALID_MESSAGE", 413: "MESSAGE_TOO_LONG", 400: "INVALID_MESSAGE"}
            body = {"code": codes.get(status_code, "INTERNAL_ERROR"), "message": exc.log_message or self._reason}
        else:
            body = {"code": "INTERNAL_ERROR", "message": "Internal error"}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": body}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors are not logged with tracebacks; unexpected ones are."""
        if isinstance(value, ChatdError):
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(ApiHandler):
    """JSON 404 for unknown API paths."""

    public = True

    def prepare(self) -> None:  # type: ignore[override]
        """Every method: 404."""
        raise tornado.web.HTTPError(404, "No such endpoint")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line, with the client's own address behind a trusted proxy (never the query string)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    client = client_address(request, handler.settings["trusted_proxies"])
    logging.getLogger("tornado.access").log(level, "%d %s %s (%s) %.2fms", status, request.method, request.path,
                                            client, 1000.0 * request.request_time())
