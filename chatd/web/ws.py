"""The WebSocket endpoint: authenticate, decode each frame in order, dispatch, answer."""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlparse

import tornado.websocket

from chatd import protocol
from chatd.auth import Principal
from chatd.connections import Connection, ConnectionRegistry
from chatd.errors import AuthError, ChatdError, InvalidMessage
from chatd.limiter.frames import FrameRate
from chatd.store import utcnow
from chatd.web.base import Services

log = logging.getLogger(__name__)

CLOSE_HANDSHAKE_S = 1.0  # how long a closing peer gets to answer our close frame


class ChatSocket(Services, tornado.websocket.WebSocketHandler):
    """`GET /api/v1/chat/ws`: one client connection."""

    conn: Connection | None = None
    principal: Principal | None = None

    @property
    def registry(self) -> ConnectionRegistry:
        """This process's connections."""
        return self.settings["connections"]

    def check_origin(self, origin: str) -> bool:
        """Allow the configured origins, or by default only the same host (no Origin: allowed)."""
        allowed = self.config.allowed_origins
        if "*" in allowed:
            return True
        if allowed:
            return origin.rstrip("/") in [o.rstrip("/") for o in allowed]
        host = self.request.headers.get("Host", "")
        return urlparse(origin).netloc.lower() == host.lower()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame; cut the TCP connection if the peer has not answered within a second.

        Tornado waits 5 s for the peer's close frame. A peer that stopped reading or died never
        sends one, and its socket and buffers would be held that long.
        """
        conn = self.ws_connection
        super().close(code, reason)
        stream = getattr(conn, "stream", None)
        if stream is not None and not stream.closed():
            asyncio.get_running_loop().call_later(CLOSE_HANDSHAKE_S, stream.close)

    def open(self, *args: Any) -> None:
        """Wait for the auth frame, at most `auth_timeout_s`."""
        self.session_id = secrets.token_urlsafe(12)
        self.rate = FrameRate(self.config.max_frames_per_second)
        self._typing_task: asyncio.Task | None = None
        loop = asyncio.get_running_loop()
        self._auth_timer = loop.call_later(self.config.auth_timeout_s, self._auth_timeout)
        self.settings["sockets"].add(self)

    def _auth_timeout(self) -> None:
        if self.principal is None:
            self.close(protocol.CLOSE_AUTH, "Authentication required")

    async def on_message(self, message: str | bytes) -> None:
        """Handle one frame; the next is not read until this returns (arrival order)."""
        if not self.registry.frame_started():
            return  # shutting down: the socket is being closed with 1001
        try:
            await self._handle(message)
        finally:
            self.registry.frame_finished()

    async def _handle(self, message: str | bytes) -> None:
        if not self.rate.allow():
            self.close(protocol.CLOSE_ABUSE, "Too many frames")
            return
        if self.principal is None:
            await self._authenticate(message)
            return
        assert self.conn is not None
        ref = None
        try:
            if isinstance(message, bytes):
                raise InvalidMessage("Binary frames are not supported; send JSON text")
            raw = protocol.decode_json(message)
            ref = protocol.peek_ref(raw)
            frame = protocol.decode_frame(raw)
            self.metrics.frames_in.labels(type=frame.type).inc()
            await self._dispatch(frame)
        except ChatdError as e:
            self._send_error(e, ref)
        except Exception:
            log.exception("frame handling failed (session %s)", self.session_id)
            self._send_error(ChatdError("Internal error"), ref)

    def _send_error(self, e: ChatdError, ref: str | None) -> None:
        data = e.to_data()
        if ref is not None:
            data["ref"] = ref
        self.metrics.errors.labels(code=e.code).inc()
        if self.conn is not None:
            self.conn.send_frame("error", data)

    async def _authenticate(self, message: str | bytes) -> None:
        try:
            raw = protocol.decode_json(message) if isinstance(message, str) else {}
        except ChatdError:
            raw = {}
        if raw.get("type") != "auth":
            self.close(protocol.CLOSE_AUTH, "Authentication required")
            return
        token = raw.get("token")
        if token is None and isinstance(raw.get("data"), dict):
            token = raw["data"].get("token")
        try:
            principal = await self.tokens.verify(token)
        except AuthError as e:
            self.close(protocol.CLOSE_AUTH, str(e))
            return
        self._auth_timer.cancel()
        self.principal = principal
        self.conn = Connection(self, principal.user_id, self.session_id, self.config.outbound_queue_bytes,
                               self.metrics)
        await self.registry.add(self.conn)
        if self.ws_connection is None:  # closed while registering
            await self._cleanup()
            return
        self.conn.send_frame("auth_success", {
            "user_id": principal.user_id, "session_id": self.session_id, "server_time": utcnow(),
            "heartbeat_s": self.config.heartbeat_interval_s}, user_id=principal.user_id)

    def _ack(self, ref: str | None, **fields: Any) -> None:
        data = {k: v for k, v in fields.items() if v is not None}
        if ref is not None:
            data["ref"] = ref
        assert self.conn is not None
        self.conn.send_frame("ack", data)

    async def _dispatch(self, frame: protocol.ClientFrame) -> None:
        assert self.conn is not None and self.principal is not None
        d = frame.data
        t = frame.type
        if t == "auth":
            # A fresh token for the same user keeps the connection alive past expiry.
            token = frame.raw.get("token")
            if token is None and isinstance(d, dict):
                token = d.get("token")
            try:
                principal = await self.tokens.verify(token)
            except AuthError as e:
                self.close(protocol.CLOSE_AUTH, str(e))
                return
            if principal.user_id != self.principal.user_id:
                self.close(protocol.CLOSE_AUTH, "Invalid token")
                return
            self.principal = principal
            self._ack(frame.ref)
        elif t == "ping":
            self.conn.send_frame("pong", d)
        elif t == "join_conversation":
            await self.chat.conversation_for_member(self.principal, d.conversation_id)
            await self.registry.join(self.conn, d.conversation_id, d.since_seq, frame.ref)
        elif t == "leave_conversation":
            await self.chat.conversation_for_member(self.principal, d.conversation_id)
            await self.registry.leave(self.conn, d.conversation_id)
            await self._typing(d.conversation_id, False, check=False)
            self._ack(frame.ref)
        elif t == "send_message":
            await self.chat.send_message(
                self.principal, d.conversation_id, d.content, d.message_type, d.client_msg_id, d.assistant_id,
                on_stored=lambda message: self._ack(frame.ref, client_msg_id=d.client_msg_id,
                                                    message_id=message.id))
            if d.conversation_id in self.conn.typing_in:
                await self._typing(d.conversation_id, False, check=False)
        elif t == "stream_response":
            reply = await self.chat.stream_response(self.principal, d.conversation_id, d.message_id, d.assistant_id)
            self._ack(frame.ref, message_id=reply.id)
        elif t in ("typing", "typing_start", "typing_stop"):
            is_typing = d.is_typing if t == "typing" else t == "typing_start"
            await self._typing(d.conversation_id, is_typing, check=True)
            if frame.ref is not None:
                self._ack(frame.ref)
        elif t == "stop_generation":
            await self.chat.stop_generation(self.principal, d.message_id)
            self._ack(frame.ref, message_id=d.message_id)

    async def _typing(self, conversation_id: Any, is_typing: bool, check: bool) -> None:
        assert self.conn is not None and self.principal is not None
        if check:
            await self.chat.typing(self.principal, conversation_id, is_typing)
        elif conversation_id in self.conn.typing_in:
            await self.chat.publish_typing(self.principal.user_id, conversation_id, False)
        if is_typing:
            self.conn.typing_in.add(conversation_id)
        else:
            self.conn.typing_in.discard(conversation_id)

    def on_close(self) -> None:
        """Free everything the connection held."""
        self._auth_timer.cancel()
        self.settings["sockets"].discard(self)
        asyncio.get_running_loop().create_task(self._cleanup())

    async def _cleanup(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        for cid in list(conn.typing_in):
            try:
                await self.chat.publish_typing(conn.user_id, cid, False)
            except Exception:
                log.debug("typing cleanup failed", exc_info=True)
        conn.typing_in.clear()
        await self.registry.remove(conn)


def routes() -> list:
    """The WebSocket route."""
    return [(r"/api/v1/chat/ws", ChatSocket)]
