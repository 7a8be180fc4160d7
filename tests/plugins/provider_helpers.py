"""Helpers shared by the provider tests: drive a provider the way chatd's replies do."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatd.errors import ChatdError
from chatd.providers import Assistant, Completion, CompletionRequest, Provider, Turn


@dataclass
class Outcome:
    """What one drive of a provider produced."""

    deltas: list[str] = field(default_factory=list)
    completion: Completion = field(default_factory=Completion)
    error: ChatdError | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        """The deltas joined."""
        return "".join(self.deltas)


def make_request(model: str = "gpt-4o-mini", *, name: str = "Test Assistant", system: str = "Be brief.",
                 user: str = "Hi there", max_tokens: int | None = 100, temperature: float | None = 0.5,
                 history: list[Turn] | None = None, options: dict[str, Any] | None = None) -> CompletionRequest:
    """A completion request like chatd builds."""
    assistant = Assistant(id="a1", name=name, provider="p", model=model, system_prompt=system,
                          max_tokens=max_tokens, temperature=temperature, options=options or {})
    turns = ([Turn("system", system)] if system else []) + list(history or []) + [Turn("user", user)]
    return CompletionRequest(assistant=assistant, messages=turns, model=model, max_tokens=max_tokens,
                             temperature=temperature)


async def drive(provider: Provider, request: CompletionRequest) -> Outcome:
    """Iterate the provider's stream to the end; a ChatdError is captured, not raised."""
    out = Outcome()
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async for delta in provider.stream(request, out.completion):
            out.deltas.append(delta)
    except ChatdError as e:
        out.error = e
    out.elapsed = loop.time() - start
    return out



async def drive_and_close(provider: Provider, request: CompletionRequest) -> Outcome:
    """`drive` a provider made for one test, then close it."""
    try:
        return await drive(provider, request)
    finally:
        await provider.aclose()


async def cancel_after(provider: Provider, request: CompletionRequest, n: int = 2) -> list[str]:
    """Stream, cancel the iteration once `n` deltas arrived, check it ended cancelled; the deltas seen."""
    got: list[str] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for delta in provider.stream(request, Completion()):
            got.append(delta)
            if len(got) == n:
                enough.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return got
