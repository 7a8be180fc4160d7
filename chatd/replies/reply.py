"""One in-flight AI reply: drive the provider, coalesce deltas, number chunks, checkpoint, finish."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from chatd.bus import conversation_channel
from chatd.errors import ChatdError
from chatd.filters import OutboundSession
from chatd.inflight import InflightReply
from chatd.providers import Completion, CompletionRequest, Provider, Usage
from chatd.context import estimate_tokens

log = logging.getLogger(__name__)

#: How a reply ended when it was stopped by the server shutting down rather than a user.
SHUTDOWN = "shutdown"


def envelope(frame_type: str, data: dict, *, conv: Any = None, seq: int | None = None,
             change: bool = False, exclude_user: Any = None, msg: Any = None,
             index: int | None = None) -> dict:
    """A bus event: the frame plus what connections need to order, dedupe and filter it."""
    return {"frame": {"type": frame_type, "data": data}, "conv": conv, "seq": seq, "change": change,
            "exclude_user": exclude_user, "msg": msg, "index": index}


@dataclass
class ReplyTiming:
    """Knobs of the streaming loop."""

    coalesce_s: float
    coalesce_max_chars: int
    checkpoint_s: float


class Reply:
    """Runs one reply to completion, cancellation or failure, and stores the result."""

    def __init__(self, *, state: InflightReply, assistant_id: str, provider: Provider,
                 request: CompletionRequest, outbound: list[OutboundSession], timing: ReplyTiming,
                 publish: Callable[[str, dict], Awaitable[None]], store: Any, inflight: Any,
                 on_finished: Callable[[dict, "Reply"], Awaitable[None]], metrics: Any = None) -> None:
        self.state = state
        self.assistant_id = assistant_id
        self.provider = provider
        self.request = request
        self.outbound = outbound
        self.timing = timing
        self.publish = publish
        self.store = store
        self.inflight = inflight
        self.on_finished = on_finished
        self.metrics = metrics
        self.stop_reason: str | None = None  # "user" or SHUTDOWN once stopped
        self.task: asyncio.Task | None = None
        self.finishing = False  # storing the result: too late to stop
        self._last_checkpoint = 0.0
        self._checkpointed = ""

    def stop(self, reason: str) -> bool:
        """Cancel the reply unless it is already stopped or finishing; True if this call stopped it."""
        if self.stop_reason is not None or self.finishing or self.task is None:
            return False
        self.stop_reason = reason
        self.task.cancel()
        return True

    @property
    def message_id(self) -> Any:
        """The assistant message's id."""
        return self.state.message_id

    def _env(self, frame_type: str, data: dict, **kw: Any) -> dict:
        return envelope(frame_type, data, conv=self.state.conversation_id, msg=self.state.message_id, **kw)

    async def _emit(self, frame_type: str, data: dict, **kw: Any) -> None:
        await self.publish(conversation_channel(self.state.conversation_id), self._env(frame_type, data, **kw))

    async def _send_chunk(self, text: str) -> None:
        """Pass a delta through the outbound filters and emit what they let out."""
        for session in self.outbound:
            text = session.feed(text)
        await self._emit_chunk(text)

    async def _flush_filters(self) -> None:
        """The reply ended: release text the outbound filters held back, through the whole chain."""
        carry = ""
        for session in self.outbound:
            carry = (session.feed(carry) if carry else "") + session.flush()
        await self._emit_chunk(carry)

    async def _emit_chunk(self, text: str) -> None:
        """Number a chunk, add it to the text so far, and publish it."""
        if not text:
            return
        self.state.index += 1
        self.state.text += text
        await self.inflight.update(self.state)
        await self._emit("stream_content", {"message_id": self.state.message_id, "content": text,
                                            "is_complete": False, "index": self.state.index},
                         index=self.state.index)

    async def _maybe_checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.state.text != self._checkpointed and (force or now - self._last_checkpoint >= self.timing.checkpoint_s):
            self._last_checkpoint = now
            self._checkpointed = self.state.text
            await self.store.checkpoint_reply(self.state.message_id, self.state.text)

    async def _drive(self, completion: Completion) -> None:
        """Pull deltas; send the first at once, then at most one chunk per coalescing window."""
        agen = self.provider.stream(self.request, completion).__aiter__()
        pending = ""
        last_flush = 0.0
        started = time.monotonic()
        first = True
        next_delta: asyncio.Future | None = None
        window = self.timing.coalesce_s
        try:
            while True:
                if next_delta is None:
                    next_delta = asyncio.ensure_future(agen.__anext__())
                timeout = None
                if pending:
                    timeout = max(0.0, last_flush + window - time.monotonic())
                done, _ = await asyncio.wait({next_delta}, timeout=timeout)
                if not done:
                    await self._send_chunk(pending)
                    pending, last_flush = "", time.monotonic()
                    await self._maybe_checkpoint()
                    continue
                try:
                    delta = next_delta.result()
                except StopAsyncIteration:
                    next_delta = None
                    break
                except Exception:
                    next_delta = None
                    if pending:  # the provider failed: keep (send and store) what it produced first
                        await self._send_chunk(pending)
                    raise
                next_delta = None
                if not isinstance(delta, str) or not delta:
                    continue
                pending += delta
                now = time.monotonic()
                if now - last_flush >= window or len(pending) >= self.timing.coalesce_max_chars:
                    if first and self.metrics is not None:
                        self.metrics.first_token.observe(now - started)
                    first = False
                    await self._send_chunk(pending)
                    pending, last_flush = "", now
                    await self._maybe_checkpoint()
            if pending:
                await self._send_chunk(pending)
        finally:
            if next_delta is not None and not next_delta.done():
                next_delta.cancel()
                try:
                    await next_delta
                except (asyncio.CancelledError, StopAsyncIteration, Exception):
                    pass
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.debug("provider stream aclose failed", exc_info=True)

    async def run(self) -> None:
        """The whole life of the reply."""
        s = self.state
        await self._emit("stream_start", {"message_id": s.message_id, "conversation_id": s.conversation_id,
                                          "assistant_id": self.assistant_id, "reply_to": s.reply_to})
        await self._emit("typing_indicator", {"conversation_id": s.conversation_id, "user_id": "assistant",
                                              "is_typing": True})
        completion = Completion()
        status, error = "complete", None
        try:
            await self._drive(completion)
        except asyncio.CancelledError:
            status = "interrupted" if self.stop_reason == SHUTDOWN else "cancelled"
            error = ChatdError("Reply stopped" if status == "cancelled" else "Server shutting down")
            error.code = "CANCELLED"
        except ChatdError as e:
            status, error = "error", e
        except Exception as e:  # a provider bug must not kill the server
            log.exception("provider %s failed", self.provider.type_name)
            status, error = "error", ChatdError("The assistant failed unexpectedly")
            error.code = "PROVIDER_ERROR"
        try:
            # Text an outbound filter held back was produced by the model: keep it on every path.
            await self._flush_filters()
        except Exception:
            log.exception("outbound filter failed at the end of reply %s", self.state.message_id)
        await self._finish(status, error, completion)

    async def _finish(self, status: str, error: ChatdError | None, completion: Completion) -> None:
        self.finishing = True
        s = self.state
        usage = completion.usage or Usage(
            prompt_tokens=sum(estimate_tokens(t.content) for t in self.request.messages),
            completion_tokens=estimate_tokens(s.text))
        finish_reason = completion.finish_reason if status == "complete" else (
            "cancelled" if status in ("cancelled", "interrupted") else "error")
        try:
            message = await asyncio.shield(self.store.finish_reply(
                s.message_id, s.text, status, usage.to_dict(), finish_reason))
        finally:
            await self.inflight.release(s)
        await self._emit("typing_indicator", {"conversation_id": s.conversation_id, "user_id": "assistant",
                                              "is_typing": False})
        if error is None:
            await self._emit("stream_complete", {"message_id": s.message_id, "usage": usage.to_dict(),
                                                 "finish_reason": finish_reason})
        else:
            await self._emit("stream_error", {"message_id": s.message_id, "code": error.code,
                                              "message": error.message})
        await self._emit("message_added", {"message": message, "seq": message["seq"]}, seq=message["seq"])
        if self.metrics is not None:
            self.metrics.replies.labels(status=status).inc()
        await self.on_finished(message, self)
