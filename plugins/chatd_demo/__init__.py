"""The offline demo assistant: streams a reply token by token, no network needed.

Its replies show what the page renders: the markdown depends on the prompt. A prompt that asks
for code gets a fenced code block, one about a table a table, a haiku or poem keeps its line
breaks, one asking for steps, a list or an explanation gets a list; anything else gets a short
answer with emphasis, inline code and a list of what to try, after quoting the prompt
(`You said: "…"`). Every reply ends by saying how to talk to a real model.

Besides that it understands commands in the last user message, which tests and demos use to
script it:

- `/echo TEXT` — the reply is exactly TEXT, streamed in deltas of `echo_chunk` characters;
- `/fail N` — stream N tokens, then fail with PROVIDER_UNAVAILABLE;
- `/flaky N` — like `/fail N` the first time this prompt is answered, a normal reply when it
  is asked again (the page's Retry button: a failure, then a success).
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
    "To talk to a real model, set `OPENAI_API_KEY` (or `OPENAI_BASE_URL` for Ollama, vLLM or any "
    "OpenAI-compatible server) or `ANTHROPIC_API_KEY` in the environment, or define `[providers]` "
    "and `[[assistants]]` in your chatd.toml, then restart chatd."
)

CODE = """Here is a function, in a fenced code block with its language named:

```python
def merge_sorted(a: list[int], b: list[int]) -> list[int]:
    \"\"\"Merge two sorted lists into one sorted list.\"\"\"
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i]); i += 1
        else:
            out.append(b[j]); j += 1
    return out + a[i:] + b[j:]
```

It walks both lists once, so it runs in **O(n + m)** time. The block has a *Copy* button."""

TABLE = """| Algorithm | Average | Worst | Stable |
|---|---|---|---|
| Merge sort | O(n log n) | O(n log n) | yes |
| Quicksort | O(n log n) | O(n²) | no |
| Insertion sort | O(n²) | O(n²) | yes |

A table scrolls sideways on a narrow screen; **bold**, *italics* and `code` work in cells too."""

HAIKU = """Tokens drift like snow
each one lands before the next
the reply takes shape"""

LIST = """The demo knows one topic, so here is how WebSockets differ from long polling:

1. **The client opens one connection** and keeps it: a WebSocket is a single TCP connection
   upgraded from HTTP.
2. **Both sides send when they like.** With long polling the server can answer only while a
   request is waiting, and the client must ask again after each answer.
3. **Less overhead per message:** a WebSocket frame costs a few bytes, a polled answer a whole
   HTTP request and its headers.

- chatd streams each reply as `stream_content` frames over that one connection;
- a lost connection is resumed with `join_conversation` and `since_seq`."""

DEFAULT = """I am the **offline demo assistant** of chatd: no model runs behind me, and this reply streams
token by token so you can watch real-time delivery work. Things to try:

- ask me for *code* (a fenced block), a *table*, a *haiku* or a *list*;
- `/echo some text` replies exactly that text;
- `/fail 3` fails after three tokens, `/flaky 3` fails once and works on *Retry*."""

_TOKEN = re.compile(r"\s*\S+|\s+")

# Which canned body answers a prompt: the first pattern found in it wins.
TOPICS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(code|function|script|program|python|javascript|snippet|implement)\b", re.I), CODE),
    (re.compile(r"\btables?\b", re.I), TABLE),
    (re.compile(r"\b(haiku|poem|verse)\b", re.I), HAIKU),
    (re.compile(r"\b(list|steps|explain|how|why|differ\w*)\b", re.I), LIST),
]


def _tokens(text: str) -> list[str]:
    """Split text into word-sized deltas that join back to exactly the text."""
    return _TOKEN.findall(text)


def compose(prompt: str) -> str:
    """The demo's markdown reply to a prompt (no command in it)."""
    body = next((text for pattern, text in TOPICS if pattern.search(prompt)), None)
    if body is None:
        quoted = " ".join(prompt.split()[:12])
        body = f'You said: "{quoted}".\n\n{DEFAULT}' if quoted else DEFAULT
    return f"{body}\n\n{HOW_TO}"


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class DemoProvider(Provider):
    """Streams a reply that depends on the prompt at `tokens_per_second` (default 30)."""

    type_name = "demo"

    def __init__(self, config: dict[str, Any]) -> None:
        self.tokens_per_second = float(config.get("tokens_per_second", 30))
        self.echo_chunk = int(config.get("echo_chunk", 4))
        if self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")
        self._flaky_failed: set[str] = set()

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
        fail_after = None
        m = re.search(r"/(fail|flaky) (\d+)", last_user)
        if m and (m.group(1) == "fail" or self._first_time(last_user)):
            fail_after = int(m.group(2))
        return _tokens(compose(last_user)), fail_after

    def _first_time(self, prompt: str) -> bool:
        """Whether `/flaky` has not failed for this prompt yet (it fails once per prompt and process)."""
        if prompt in self._flaky_failed:
            return False
        if len(self._flaky_failed) > 1000:
            self._flaky_failed.clear()
        self._flaky_failed.add(prompt)
        return True

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
