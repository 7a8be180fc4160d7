"""An example chatd plugin: a `hello` provider, its default assistant, and a no-shouting filter."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from chatd import hookimpl
from chatd.errors import Filtered
from chatd.filters import FilterContext, InboundFilter
from chatd.providers import Completion, CompletionRequest, Provider, Usage


class HelloProvider(Provider):
    """Greets the last user message, one word at a time."""

    type_name = "hello"

    def __init__(self, config: dict[str, Any]) -> None:
        self.greeting = str(config.get("greeting", "Hello"))
        self.delay = float(config.get("delay", 0.01))

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield `Hello, <last user message>!` word by word, then report usage."""
        last = next((t.content for t in reversed(request.messages) if t.role == "user"), "")
        words = f"{self.greeting}, {last}!".split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(self.delay)  # a real provider awaits its HTTP stream here
            yield word if i == 0 else " " + word
        completion.usage = Usage(prompt_tokens=len(last.split()), completion_tokens=len(words))
        completion.finish_reason = "stop"


class NoShouting(InboundFilter):
    """Refuses messages in capitals (registered when `[plugins.hello] no_shouting = true`)."""

    name = "no_shouting"

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """Pass the content, or refuse it with FILTERED."""
        if content.isupper():
            raise Filtered("Please don't shout")
        return content


@hookimpl
def register_providers(register: Callable[[str, Callable[[dict[str, Any]], Provider]], None]) -> None:
    """Register the `hello` provider type."""
    register("hello", HelloProvider)


@hookimpl
def register_filters(register: Callable[[Any], None], plugin_settings: Mapping[str, Any]) -> None:
    """Register the no-shouting filter when our `[plugins.hello]` table turns it on."""
    if plugin_settings.get("hello", {}).get("no_shouting"):
        register(NoShouting())


@hookimpl
def default_assistants(environ: dict[str, str]) -> list[dict[str, Any]]:
    """Offer the hello assistant when no assistants are configured (not the default)."""
    return [{"id": "hello", "name": "Hello (example plugin)", "provider": "hello", "model": "hello-1",
             "provider_config": {"type": "hello"}}]
