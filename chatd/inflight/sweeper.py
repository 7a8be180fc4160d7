"""Orphaned replies: who owns a reply (owner ids), whether that process lives, and the sweep.

A reply is owned by the process that generates it. When that process dies, its replies stay
`streaming` in the store; the sweep stores them `interrupted` with their checkpointed text. With
shared leases (Redis) any process may sweep any owner's replies; in-process, a reply's owner is
judged by its pid on this host.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from chatd.aio import cancel_and_wait
from chatd.inflight import InflightRegistry
from chatd.models import Conversation, Id, Message
from chatd.store import Store

log = logging.getLogger(__name__)

#: Called with each reply the sweep stored `interrupted`, to announce it.
OnSwept = Callable[[Message, Conversation | None], Awaitable[None]]


def make_owner_id() -> str:
    """This process's identity as the owner of replies: host, pid and a random nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_alive(owner: str | None) -> bool:
    """Whether a reply's owning process may still run (False only when certainly dead)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isascii() or not pid_text.isdigit():
        return True  # another machine's process: its lease is not ours to judge
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OrphanSweeper:
    """Finds replies whose owner died and stores them `interrupted`, once, whichever process sees it first."""

    def __init__(self, store: Store, inflight: InflightRegistry, owner: str, lease_s: float,
                 on_swept: OnSwept) -> None:
        self.store = store
        self.inflight = inflight
        self.owner = owner
        self.lease_s = lease_s
        self.on_swept = on_swept
        self._suspects: dict[Id, float] = {}  # orphan candidates: message id → when first seen without a lease
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Sweep once now; with shared leases keep sweeping (other processes may die at any time)."""
        await self.sweep()
        if self.inflight.shared:
            self._task = asyncio.create_task(self._loop(), name="orphan-sweeper")

    async def close(self) -> None:
        """Stop sweeping."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 2)
            try:
                await self.sweep()
            except Exception:  # Redis or the store briefly away: try again next round
                log.warning("orphan sweep failed", exc_info=True)

    async def _owner_dead(self, msg: Message, known: dict[str | None, bool | None]) -> bool:
        """Whether the reply's owner is certainly gone (with shared leases: absent for a grace period,
        so a Redis that restarted empty does not orphan live replies before their owners re-lease).
        `known` caches each owner's liveness for one sweep: one lookup per owner, not per reply."""
        if msg.owner == self.owner:
            return False
        if msg.owner not in known:
            known[msg.owner] = await self.inflight.owner_alive(msg.owner)
        alive = known[msg.owner]
        if alive is None:
            return not owner_is_alive(msg.owner)
        if alive:
            self._suspects.pop(msg.id, None)
            return False
        now = asyncio.get_running_loop().time()
        first = self._suspects.setdefault(msg.id, now)
        return now - first >= self.lease_s / 2

    async def sweep(self) -> int:
        """Store replies whose owner died as `interrupted`, keeping the checkpointed text; how many."""
        count = 0
        streaming = await self.store.streaming_replies()
        live_ids = {msg.id for msg in streaming}
        for mid in [m for m in self._suspects if m not in live_ids]:
            del self._suspects[mid]
        known: dict[str | None, bool | None] = {}
        for msg in streaming:
            if not await self._owner_dead(msg, known):
                continue
            self._suspects.pop(msg.id, None)
            if not await self.inflight.claim_sweep(msg.id):
                continue  # another process's sweep finishes it
            stored, conv = await self.store.finish_reply(msg.id, msg.content, "interrupted", None, "error")
            await self.on_swept(stored, conv)
            count += 1
        if count:
            log.info("marked %d orphaned replies as interrupted", count)
        return count
