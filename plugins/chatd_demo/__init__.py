"""The offline demo assistant: streams a canned reply token by token, no network needed.

Besides its canned answer it understands two commands in the last user message, which
tests and demos use to script it:

- `/echo TEXT` — the reply is exactly TEXT, streamed in deltas of `echo_chunk` characters;
- `/fail N` — stream N tokens, then fail with PROVIDER_UNAVAILABLE.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatd import hookimpl
from chatd.errors import ProviderUnavailable
from chatd.providers import Completion, CompletionRequest, Provider, Usage

HOW_TO = (
    "I am the offline demo assistant of chatd, streaming this answer token by token so "
    "you can watch real-time delivery work. To talk to a real model, set OPENAI_API_KEY "
    "(or OPENAI_BASE_URL for Ollama, vLLM or any OpenAI-compatible server) or "
    "ANTHROPIC_API_KEY in the environment, or define [providers] and [[assistants]] in "
    "your chatd.toml, then restart chatd. Until then, I will keep echoing what you say."
)

_TOKEN = re.compile(r"\s*\S+|\s+")


def _tokens(text: str) -> list[str]:
    """Split text into word-sized deltas that join back to exactly the text."""
    return _TOKEN.findall(text)


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class DemoProvider(Provider):
    """Streams a canned reply at `tokens_per_second` (default 30)."""

    type_name = "demo"

    def __init__(self, config: dict[str, Any]) -> None:
        self.tokens_per_second = float(config.get("tokens_per_second", 30))
        self.echo_chunk = int(config.get("echo_chunk", 4))
        if self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")

    def _script(self, request: CompletionRequest) -> tuple[list[str], int | None]:
        last_user = next((t.content for t in reversed(request.messages) if t.role == "user"), "")
        if request.purpose == "title":
            # The title prompt quotes the exchange as "User: …\n\nAssistant: …": title the user's part.
            asked = last_user.split("\n\nAssistant:", 1)[0].removeprefix("User:")
            words = asked.split()[:6]
            return _tokens(" ".join(words) or "New chat"), None
        if "/echo " in last_user:
            text = last_user.split("/echo ", 1)[1]
            n = self.echo_chunk
            return [text[i : i + n] for i in range(0, len(text), n)], None
        m = re.search(r"/fail (\d+)", last_user)
        fail_after = int(m.group(1)) if m else None
        quoted = " ".join(last_user.split()[:12])
        text = f'You said: "{quoted}". {HOW_TO}' if quoted else HOW_TO
        return _tokens(text), fail_after

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield the scripted reply at the configured pace."""
        deltas, fail_after = self._script(request)
        delay = 1.0 / self.tokens_per_second
        prompt = sum(_estimate_tokens(t.content) for t in request.messages)
        sent = 0
        for i, delta in enumerate(deltas):
            if fail_after is not None and i >= fail_after:
                raise ProviderUnavailable("Demo assistant failed on purpose (/fail)")
            await asyncio.sleep(delay)
            sent += 1
            yield delta
        completion.usage = Usage(prompt_tokens=prompt, completion_tokens=sent)
        completion.finish_reason = "stop"


@hookimpl
def register_providers(register: Callable[[str, Callable[[dict[str, Any]], Provider]], None]) -> None:
    """Register the `demo` provider type."""
    register("demo", DemoProvider)


@hookimpl(trylast=True)
def default_assistants(environ: dict[str, str]) -> list[dict[str, Any]]:
    """Offer the demo assistant, so chatd works on a bare machine."""
    return [
        {
            "id": "demo",
            "name": "Demo assistant (offline)",
            "provider": "demo",
            "model": "demo",
            "provider_config": {"type": "demo"},
            # Offered last (trylast): a real provider's default assistant, offered first, wins.
            "default": True,
        }
    ]
