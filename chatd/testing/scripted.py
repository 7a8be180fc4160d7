"""A provider the test scripts and observes, and the settings that make it the default assistant."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatd import hookimpl
from chatd.errors import ProviderUnavailable
from chatd.providers import Completion, CompletionRequest, Provider, Usage


class ScriptedProvider(Provider):
    """Yields `deltas` (from the test) with `delay` seconds between them; records what happened."""

    type_name = "scripted"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.deltas: list[str] = list(config.get("deltas", ["a", "b", "c"]))
        self.delay: float = float(config.get("delay", 0.0))
        self.fail_after: int | None = config.get("fail_after")
        self.started = 0
        self.cancelled = 0  # CancelledError seen inside the generator
        self.closed = 0  # GeneratorExit seen (aclose)
        self.finished = 0  # ran to the end
        self.yielded = 0

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield the scripted deltas (failing with PROVIDER_UNAVAILABLE after `fail_after` of them)."""
        self.started += 1
        try:
            for i, d in enumerate(self.deltas):
                if self.fail_after is not None and i >= self.fail_after:
                    raise ProviderUnavailable("scripted failure")
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.yielded += 1
                yield d
            completion.usage = Usage(prompt_tokens=1, completion_tokens=len(self.deltas))
            completion.finish_reason = "stop"
            self.finished += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except GeneratorExit:
            self.closed += 1
            raise


class ScriptedPlugin:
    """A plugin object registering the `scripted` provider type; keeps the instances it made."""

    def __init__(self) -> None:
        self.instances: list[ScriptedProvider] = []

    @hookimpl
    def register_providers(self, register: Callable[[str, Callable[[dict[str, Any]], Provider]], None]) -> None:
        """Register `scripted`, remembering each instance."""
        def factory(config: dict[str, Any]) -> ScriptedProvider:
            p = ScriptedProvider(config)
            self.instances.append(p)
            return p

        register("scripted", factory)

    @property
    def provider(self) -> ScriptedProvider:
        """The provider instance made last."""
        return self.instances[-1]


def scripted_settings(deltas: list[str] | None = None, delay: float = 0.0, **extra: Any) -> dict[str, Any]:
    """Settings overrides: a `scripted` assistant (the default) plus the demo one."""
    conf: dict[str, Any] = {"delay": delay}
    if deltas is not None:
        conf["deltas"] = deltas
    return {
        "providers": {"scripted": conf, "demo": {"tokens_per_second": 400}},
        "assistants": [
            {"id": "scripted", "name": "Scripted", "provider": "scripted", "model": "x", "default": True},
            {"id": "demo", "name": "Demo", "provider": "demo", "model": "demo"},
        ],
        **extra,
    }


