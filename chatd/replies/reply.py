"""One in-flight AI reply: drive the provider, coalesce deltas, number chunks, checkpoint, finish."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from chatd.bus import conversation_channel, events
from chatd.bus.events import Event
from chatd.context import estimate_tokens
from chatd.errors import BusUnavailable, Cancelled, ChatdError, ProviderError, StoreUnavailable
from chatd.filters import OutboundSession
from chatd.inflight import InflightRegistry, InflightReply
from chatd.metrics import Metrics
from chatd.models import Conversation, Id, Message, Usage
from chatd.providers import Completion, CompletionRequest, Provider
from chatd.store import Store

log = logging.getLogger(__name__)

#: How a reply ended when it was stopped by the server shutting down rather than a user.
SHUTDOWN = "shutdown"

#: Deltas read between two turns given to the event loop (a provider may never await).
YIELD_EVERY = 16

#: Called once the reply is stored, with the message and its conversation as the store left them.
OnFinished = Callable[[Message, "Conversation | None", "Reply"], Awaitable[None]]

#: What clients are told when the finished reply cannot be stored yet.
STORAGE_FAILED = ("Storage failed: the database is unavailable. The reply is kept and is stored as soon as "
                  "the database answers")
#: Backoff between attempts to store a finished reply while the store is away.
STORE_RETRY_FIRST_S = 0.2
STORE_RETRY_MAX_S = 5.0


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
                 on_finished: OnFinished, metrics: Metrics | None = None,
                 release_slot: Callable[[], Awaitable[None]] | None = None) -> None:
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
        self.release_slot = release_slot
        self.stop_reason: str | None = None  # "user" or SHUTDOWN once stopped
        self.task: asyncio.Task | None = None
        self.finishing = False  # storing the result: too late to stop
        self._last_checkpoint = 0.0
        self._checkpointed = ""
        self._checkpoint_task: asyncio.Task | None = None
        self._checkpoint_failing = False
        # Between the provider (the reader, in the reply's task) and the flusher task:
        self._pending: deque[str] = deque()  # deltas not sent yet
        self._pending_chars = 0
        self._wake = asyncio.Event()  # the flusher should send what is pending now
        self._timer: asyncio.TimerHandle | None = None  # the current coalescing window
        self._flushing = False
        self._ended = False  # the provider is done: flush what is left and stop
        self._first_sent = False
        self._started = 0.0

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
        """Pass text through the outbound filters and emit what they let out."""
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
        """Number a chunk, add it to the text so far, record it where joiners read it, and publish it."""
        if not text:
            return
        s = self.state
        s.index += 1
        s.text += text
        if s.index == 0 and self.metrics is not None:
            self.metrics.first_token.observe(time.monotonic() - self._started)
        await self.inflight.publish_chunk(s, text, events.stream_content(s.conversation_id, s.message_id, text,
                                                                         s.index))

    def _maybe_checkpoint(self) -> None:
        """Save the text so far in the background, at most once per interval and one write at a time.

        The stream never waits for the store: a slow or absent store delays checkpoints, not
        chunks, and the text stays in memory until a checkpoint or the final write lands.
        """
        now = time.monotonic()
        if (self.state.text == self._checkpointed or now - self._last_checkpoint < self.timing.checkpoint_s
                or (self._checkpoint_task is not None and not self._checkpoint_task.done())):
            return
        self._last_checkpoint = now
        self._checkpoint_task = asyncio.create_task(self._checkpoint(self.state.text),
                                                    name=f"reply-checkpoint-{self.message_id}")

    async def _checkpoint(self, text: str) -> None:
        try:
            await self.store.checkpoint_reply(self.state.message_id, text)
        except Exception as e:
            if not self._checkpoint_failing:  # once per outage, not once per interval
                log.warning("reply %s: checkpoint failed (%s); the text is kept in memory and saved when the store "
                            "answers", self.message_id, e)
            self._checkpoint_failing = True
            return
        if self._checkpoint_failing:
            log.info("reply %s: checkpoints are saved again", self.message_id)
        self._checkpoint_failing = False
        self._checkpointed = text

    # The streaming loop: the reply's task reads the provider's iterator directly (so a stop
    # reaches the provider at once) and only buffers; a flusher task sends what is buffered, the
    # first delta at once, then at most one chunk per coalescing window, the window starting
    # when the previous flush has completed (a slow flush makes chunks bigger, never more).
    def _take(self, delta: str) -> None:
        """Buffer a delta from the provider and decide when it goes out."""
        self._pending.append(delta)
        self._pending_chars += len(delta)
        if not self._first_sent and not self._flushing:  # the first delta goes out at once
            self._first_sent = True
            self._flush_now()
        elif self.timing.coalesce_s <= 0 or self._pending_chars >= self.timing.coalesce_max_chars:
            self._flush_now()
        elif self._timer is None and not self._flushing:
            self._timer = asyncio.get_running_loop().call_later(self.timing.coalesce_s, self._wake.set)

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake.set()

    async def _flusher(self) -> None:
        """Send what is pending whenever woken; after each flush, start the next window."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._flushing = True
            try:
                await self._flush_pending()
            finally:
                self._flushing = False
            if self._ended and not self._pending:
                return
            if self._pending and self._timer is None and not self._wake.is_set():
                # Deltas arrived while the flush ran: their window starts now.
                if self._ended or self._pending_chars >= self.timing.coalesce_max_chars:
                    self._wake.set()
                else:
                    self._timer = asyncio.get_running_loop().call_later(self.timing.coalesce_s, self._wake.set)

    async def _flush_pending(self) -> None:
        """Send the pending deltas: each as its own chunk without a window, else joined and cut at the cap."""
        if self.timing.coalesce_s <= 0:
            while self._pending:
                delta = self._pending.popleft()
                self._pending_chars -= len(delta)
                await self._send_chunk(delta)
        elif self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_chars = 0
            cap = self.timing.coalesce_max_chars
            for i in range(0, len(text), cap):
                await self._send_chunk(text[i:i + cap])
        self._maybe_checkpoint()

    async def _read(self, stream: AsyncIterator[str], flusher: asyncio.Task) -> None:
        """Pull every delta; give the loop a turn every few deltas so a provider that never awaits
        cannot hold it for a whole reply (a stop, the flusher's timer and other sockets get to run)."""
        n = 0
        async for delta in stream:
            if not isinstance(delta, str) or not delta:
                continue
            self._take(delta)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
                if flusher.done():  # a flush failed (the bus is away): stop the provider too
                    flusher.result()

    async def _end_flusher(self, flusher: asyncio.Task) -> None:
        """The provider is done (or failed, or was stopped): send what it produced, then stop the flusher."""
        self._ended = True
        self._flush_now()
        await flusher

    async def _drive(self, completion: Completion) -> None:
        """Read the provider into the flusher until it ends; the text it produced is always sent."""
        self._started = time.monotonic()
        stream = self.provider.stream(self.request, completion)
        flusher = asyncio.create_task(self._flusher(), name=f"reply-flush-{self.message_id}")
        try:
            await self._read(stream, flusher)
        except BaseException:
            try:  # the model's text so far is kept (sent and stored) whatever stopped it
                await self._end_flusher(flusher)
            except Exception:
                log.warning("could not send the last chunks of reply %s", self.message_id, exc_info=True)
            raise
        else:
            await self._end_flusher(flusher)
        finally:
            aclose = getattr(stream, "aclose", None)
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
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()  # the final write below supersedes it
        if completion.usage is not None:
            usage = completion.usage.record()
        else:
            usage = Usage.of(sum(estimate_tokens(t.content) for t in self.request.messages), estimate_tokens(s.text))
        finish_reason = completion.finish_reason if status == "complete" else (
            "cancelled" if status in ("cancelled", "interrupted") else "error")
        try:
            # The in-flight state (claim, lease, text for joiners) is kept until the reply is
            # stored: a duplicate stream_response stays refused and no sweep interrupts it.
            stored, announced = await self._store_result(status, usage, finish_reason)
        finally:
            await self.inflight.release(s)
        message, conversation = stored
        try:
            if not announced:
                await self._emit(events.typing_indicator(s.conversation_id, "assistant", False, exclude_user=None))
                if error is None:
                    await self._emit(events.stream_complete(s.conversation_id, s.message_id, usage, finish_reason))
                else:
                    await self._emit(events.stream_error(s.conversation_id, s.message_id, error.code,
                                                         error.message))
            await self._emit(events.message_added(message))
        except BusUnavailable:  # stored in full: a client that missed the end gets it by rejoining
            log.error("reply %s is stored (%s) but its end could not be published", s.message_id, status)
        if self.metrics is not None:
            self.metrics.replies.labels(status=status).inc()
        await self.on_finished(message, conversation, self)

    async def _store_result(self, status: str, usage: Usage, finish_reason: str,
                            ) -> tuple[tuple[Message, Conversation | None], bool]:
        """Store the finished reply, retrying with backoff while the store is away.

        On the first failure the clients get `stream_error` (INTERNAL_ERROR, storage failed) and
        the user's slot is freed at once; the text stays here until the store takes it. Returns
        what the store answered and whether the end of the stream was already announced.
        """
        s = self.state
        delay = STORE_RETRY_FIRST_S
        announced = False
        while True:
            try:
                return await asyncio.shield(self.store.finish_reply(s.message_id, s.text, status, usage,
                                                                    finish_reason)), announced
            except StoreUnavailable as e:
                if not announced:
                    announced = True
                    log.error("reply %s (%s, %d chars) could not be stored: %s; retrying until the store answers",
                              s.message_id, status, len(s.text), e)
                    await self._announce_storage_failure()
            await asyncio.sleep(delay)
            delay = min(delay * 2, STORE_RETRY_MAX_S)

    async def _announce_storage_failure(self) -> None:
        s = self.state
        if self.release_slot is not None:
            await self.release_slot()
        try:
            await self._emit(events.typing_indicator(s.conversation_id, "assistant", False, exclude_user=None))
            await self._emit(events.stream_error(s.conversation_id, s.message_id, StoreUnavailable.code,
                                                 STORAGE_FAILED))
        except BusUnavailable:
            log.error("reply %s: the storage failure could not be published either", s.message_id)
