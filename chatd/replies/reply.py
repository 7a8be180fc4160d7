"""One in-flight AI reply: drive the provider, coalesce deltas, number chunks, checkpoint, finish."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatd.bus import conversation_channel, events
from chatd.bus.events import Event
from chatd.context import estimate_tokens
from chatd.errors import Cancelled, ChatdError, ProviderError
from chatd.filters import OutboundSession
from chatd.inflight import InflightRegistry, InflightReply
from chatd.metrics import Metrics
from chatd.models import Conversation, Id, Message, Usage
from chatd.providers import Completion, CompletionRequest, Provider
from chatd.store import Store

log = logging.getLogger(__name__)

#: How a reply ended when it was stopped by the server shutting down rather than a user.
SHUTDOWN = "shutdown"

#: Called once the reply is stored, with the message and its conversation as the store left them.
OnFinished = Callable[[Message, "Conversation | None", "Reply"], Awaitable[None]]


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
                 publish: Callable[[str, Event], Awaitable[None]], store: Store, inflight: InflightRegistry,
                 on_finished: OnFinished, metrics: Metrics | None = None) -> None:
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
    def message_id(self) -> Id:
        """The assistant message's id."""
        return self.state.message_id

    async def _emit(self, event: Event) -> None:
        await self.publish(conversation_channel(self.state.conversation_id), event)

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
        s = self.state
        await self._emit(events.stream_content(s.conversation_id, s.message_id, text, s.index))

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
        await self._emit(events.stream_start(s.conversation_id, s.message_id, self.assistant_id, s.reply_to))
        await self._emit(events.typing_indicator(s.conversation_id, "assistant", True, exclude_user=None))
        completion = Completion()
        status = "complete"
        error: ChatdError | None = None
        try:
            await self._drive(completion)
        except asyncio.CancelledError:
            status = "interrupted" if self.stop_reason == SHUTDOWN else "cancelled"
            error = Cancelled("Reply stopped" if status == "cancelled" else "Server shutting down")
        except ChatdError as e:
            status, error = "error", e
        except Exception:  # a provider bug must not kill the server
            log.exception("provider %s failed", self.provider.type_name)
            status, error = "error", ProviderError("The assistant failed unexpectedly")
        try:
            # Text an outbound filter held back was produced by the model: keep it on every path.
            await self._flush_filters()
        except Exception:
            log.exception("outbound filter failed at the end of reply %s", self.state.message_id)
        await self._finish(status, error, completion)

    async def _finish(self, status: str, error: ChatdError | None, completion: Completion) -> None:
        self.finishing = True
        s = self.state
        if completion.usage is not None:
            usage = completion.usage.record()
        else:
            usage = Usage.of(sum(estimate_tokens(t.content) for t in self.request.messages), estimate_tokens(s.text))
        finish_reason = completion.finish_reason if status == "complete" else (
            "cancelled" if status in ("cancelled", "interrupted") else "error")
        try:
            message, conversation = await asyncio.shield(self.store.finish_reply(
                s.message_id, s.text, status, usage, finish_reason))
        finally:
            await self.inflight.release(s)
        await self._emit(events.typing_indicator(s.conversation_id, "assistant", False, exclude_user=None))
        if error is None:
            await self._emit(events.stream_complete(s.conversation_id, s.message_id, usage, finish_reason))
        else:
            await self._emit(events.stream_error(s.conversation_id, s.message_id, error.code, error.message))
        await self._emit(events.message_added(message))
        if self.metrics is not None:
            self.metrics.replies.labels(status=status).inc()
        await self.on_finished(message, conversation, self)
