"""A local fake of the OpenAI and Anthropic streaming APIs, speaking their wire formats, with error injection."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

TITLE_REPLY = "Fake Title"


@dataclass
class Behavior:
    """What the fake does with the next request."""

    kind: str = "stream"  # stream | status | hang | disconnect | stream_error
    deltas: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    finish: str | None = None  # provider-specific finish/stop reason; None = the normal one
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds between chunks
    after: int = 0  # for disconnect / stream_error: content chunks sent first
    hang_s: float = 30.0
    usage: tuple[int, int] = (11, 7)
    clean_close: bool = False  # disconnect: end the body properly but without the final events


@dataclass
class Seen:
    """A request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict


class FakeLLM:
    """The server state: scripted behaviors, requests seen, disconnects observed."""

    def __init__(self) -> None:
        self.script: list[Behavior] = []
        self.requests: list[Seen] = []  # completions asked for
        self.listings: list[Seen] = []  # GET /v1/models
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.completed = 0
        self.models: list[str] | None = None  # what GET /v1/models lists; None: 404, as a server without it
        self.models_status = 200  # another status makes GET /v1/models fail with it
        self.port = 0
        self.server: tornado.httpserver.HTTPServer | None = None

    @property
    def openai_url(self) -> str:
        """base_url for the OpenAI SDK."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        """base_url for the Anthropic SDK."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *behaviors: Behavior) -> None:
        """Script the next requests' behaviors (then the default echo)."""
        self.script.extend(behaviors)

    def take(self, body: dict) -> Behavior:
        """The behavior for a request: scripted, else an echo of the last user message."""
        if self.script:
            return self.script.pop(0)
        texts = [m.get("content") for m in body.get("messages", [])]
        last = next((t for t in reversed(texts) if isinstance(t, str)), "")
        system = body.get("system") or next((m["content"] for m in body.get("messages", [])
                                             if m.get("role") == "system"), "")
        if isinstance(system, str) and system.startswith("Write a title"):
            return Behavior(deltas=[TITLE_REPLY[:4], TITLE_REPLY[4:]])
        words = f"Echo: {last}".split(" ")
        return Behavior(deltas=[w if i == 0 else " " + w for i, w in enumerate(words)])

    def on_disconnect(self) -> None:
        """The client went away mid-response."""
        self.disconnects += 1
        self.disconnected.set()


class _Base(tornado.web.RequestHandler):
    fake: FakeLLM

    def initialize(self, fake: FakeLLM) -> None:
        self.fake = fake
        self.closed = False

    def on_connection_close(self) -> None:
        if not self._finished:
            self.closed = True
            self.fake.on_disconnect()

    def _record(self) -> dict:
        body = json.loads(self.request.body or b"{}")
        self.fake.requests.append(Seen(self.request.path, dict(self.request.headers), body))
        return body

    async def _send(self, text: str, delay: float) -> None:
        if self.closed:
            raise tornado.iostream.StreamClosedError()
        if delay:
            await asyncio.sleep(delay)
        self.write(text)
        await self.flush()

    def _abort(self) -> None:
        """Drop the TCP connection without ending the chunked body."""
        self.request.connection.stream.close()

    async def _status(self, b: Behavior) -> None:
        self.set_status(b.status)
        for k, v in b.headers.items():
            self.set_header(k, v)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(b.body))

    async def _hang(self, b: Behavior) -> None:
        deadline = time.monotonic() + b.hang_s
        while not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _sse_headers(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")

    @staticmethod
    def _to_send(b: Behavior) -> list[str]:
        """The deltas sent before a `disconnect` or `stream_error` behavior cuts in."""
        return b.deltas[:b.after] if b.kind in ("disconnect", "stream_error") else b.deltas

    def _disconnect(self, b: Behavior) -> None:
        """End a `disconnect` behavior's response: cleanly without the final event, or by cutting the connection."""
        if b.clean_close:
            self.finish()
        else:
            self._abort()

    async def _begin(self) -> tuple[dict, Behavior] | None:
        """Record the request, take its behavior and answer a `status` or `hang` one (then None)."""
        body = self._record()
        b = self.fake.take(body)
        if b.kind == "status":
            await self._status(b)
            return None
        if b.kind == "hang":
            await self._hang(b)
            return None
        self._sse_headers()
        return body, b


class OpenAIHandler(_Base):
    """POST /v1/chat/completions, streaming `chat.completion.chunk`s like api.openai.com."""

    def _chunk(self, cid: str, model: str, delta: dict, finish: str | None, usage: Any = None,
               choices: bool = True) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "service_tier": "default", "system_fingerprint": "fp_fake0001",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
               "usage": usage}
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"

    async def post(self) -> None:
        begun = await self._begin()
        if begun is None:
            return
        body, b = begun
        self.set_header("x-request-id", f"req_{uuid.uuid4().hex[:12]}")
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        model = body.get("model", "gpt-fake") + "-2024-07-18"
        try:
            await self._send(self._chunk(cid, model, {"role": "assistant", "content": "", "refusal": None}, None), 0)
            for d in self._to_send(b):
                await self._send(self._chunk(cid, model, {"content": d}, None), b.delay)
            if b.kind == "disconnect":
                self._disconnect(b)
                return
            if b.kind == "stream_error":
                err = {"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": None}}
                await self._send(f"data: {json.dumps(err)}\n\n", 0)
                self.finish()
                return
            await self._send(self._chunk(cid, model, {}, b.finish or "stop"), b.delay)
            if (body.get("stream_options") or {}).get("include_usage"):
                p, c = b.usage
                usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                       "accepted_prediction_tokens": 0,
                                                       "rejected_prediction_tokens": 0}}
                await self._send(self._chunk(cid, model, {}, None, usage, choices=False), 0)
            await self._send("data: [DONE]\n\n", 0)
            self.finish()
            self.fake.completed += 1
        except tornado.iostream.StreamClosedError:
            self.fake.on_disconnect() if not self.closed else None


class ModelsHandler(_Base):
    """GET /v1/models: the model list of an OpenAI-compatible server (Ollama's shape: owned_by "library")."""

    def get(self) -> None:
        self.fake.listings.append(Seen(self.request.path, dict(self.request.headers), {}))
        self.set_header("Content-Type", "application/json")
        if self.fake.models is None or self.fake.models_status != 200:
            status = 404 if self.fake.models is None else self.fake.models_status
            self.set_status(status)
            self.finish(json.dumps({"error": {"message": "not found" if status == 404 else "server error",
                                              "type": "invalid_request_error", "param": None, "code": None}}))
            return
        data = [{"id": m, "object": "model", "created": 1733000000 + i, "owned_by": "library"}
                for i, m in enumerate(self.fake.models)]
        self.finish(json.dumps({"object": "list", "data": data}))


class AnthropicHandler(_Base):
    """POST /v1/messages, streaming named SSE events like api.anthropic.com."""

    async def _event(self, name: str, data: dict, delay: float = 0.0) -> None:
        await self._send(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n", delay)

    async def post(self) -> None:
        begun = await self._begin()
        if begun is None:
            return
        body, b = begun
        self.set_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        p, c = b.usage
        msg = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
               "model": body.get("model", "claude-fake"), "content": [], "stop_reason": None,
               "stop_sequence": None,
               "usage": {"input_tokens": p, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                         "output_tokens": 1, "service_tier": "standard"}}
        try:
            await self._event("message_start", {"type": "message_start", "message": msg})
            await self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}})
            await self._event("ping", {"type": "ping"})
            for d in self._to_send(b):
                await self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                          "delta": {"type": "text_delta", "text": d}}, b.delay)
            if b.kind == "disconnect":
                self._disconnect(b)
                return
            if b.kind == "stream_error":
                await self._event("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                       "message": "Overloaded"}})
                self.finish()
                return
            await self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            await self._event("message_delta", {"type": "message_delta",
                                                "delta": {"stop_reason": b.finish or "end_turn", "stop_sequence": None},
                                                "usage": {"output_tokens": c}}, b.delay)
            await self._event("message_stop", {"type": "message_stop"})
            self.finish()
            self.fake.completed += 1
        except tornado.iostream.StreamClosedError:
            self.fake.on_disconnect() if not self.closed else None


def serve_fake(fake: FakeLLM, port: int = 0) -> tornado.httpserver.HTTPServer:
    """Start serving `fake` on 127.0.0.1 (`port` 0: a free one, recorded in `fake.port`)."""
    app = tornado.web.Application([
        (r"/v1/chat/completions", OpenAIHandler, {"fake": fake}),
        (r"/v1/models", ModelsHandler, {"fake": fake}),
        (r"/v1/messages", AnthropicHandler, {"fake": fake}),
    ])
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    fake.port = sockets[0].getsockname()[1]
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    fake.server = server
    return server


async def stop_fake(server: tornado.httpserver.HTTPServer) -> None:
    """Stop a server `serve_fake` started."""
    server.stop()
    await server.close_all_connections()
