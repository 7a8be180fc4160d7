"""The history a provider sees: system prompt first, trimmed to the assistant's context budget.

Token counting: for a model tiktoken knows (OpenAI's, e.g. `gpt-4o` → `o200k_base`), the
real tokenizer counts, plus OpenAI's per-message overhead of 4 tokens. tiktoken downloads
its encoding files on first use and caches them (`TIKTOKEN_CACHE_DIR`); chatd never makes
a reply wait for that: the first use starts a background load and counts with the
estimate until the encoding is ready, and an encoding that cannot be loaded (offline
machine, empty cache) is not tried again. For other models (Claude, local models) the
documented estimate is one token per four characters, rounded up — close for English
prose, low for code and for languages without spaces, so budgets should leave margin.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from chatd.models import Message
from chatd.providers import Assistant, Turn

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # a documented estimate when no tokenizer is known for the model
MESSAGE_OVERHEAD = 4  # role and separators per message (OpenAI's chat format spends 3 to 4)

_lock = threading.Lock()
_encodings: dict[str, Any] = {}  # encoding name -> tiktoken.Encoding, or None when it can't be loaded
_loading: set[str] = set()


def estimate_tokens(text: str) -> int:
    """Rough token count: one token per four characters, at least one for non-empty text."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def encoding_name(model: str) -> str | None:
    """The tiktoken encoding of a model, or None when tiktoken does not know the model."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None


def _load(name: str) -> None:
    try:
        import tiktoken

        enc: Any = tiktoken.get_encoding(name)
    except Exception as e:  # offline, no cache, or a broken file: use the estimate
        log.info("tokenizer %s unavailable (%s); counting tokens by estimate", name, type(e).__name__)
        enc = None
    with _lock:
        _encodings[name] = enc
        _loading.discard(name)


def register_encoding(name: str, encoding: Any) -> None:
    """Make an encoding available without loading it (for pre-seeded or custom encodings, and tests)."""
    with _lock:
        _encodings[name] = encoding


def load_encoding(name: str, wait: bool = False) -> Any:
    """The encoding if loaded; otherwise start loading it in the background (or wait with `wait`)."""
    with _lock:
        if name in _encodings:
            return _encodings[name]
        start = name not in _loading
        _loading.add(name)
    if wait:
        _load(name)
        return _encodings.get(name)
    if start:
        threading.Thread(target=_load, args=(name,), name=f"tiktoken-{name}", daemon=True).start()
    return None


def token_counter(model: str) -> tuple[Callable[[str], int], bool]:
    """(count, exact): the model's tokenizer when available now, else the estimate."""
    name = encoding_name(model)
    enc = load_encoding(name) if name else None
    if enc is None:
        return estimate_tokens, False

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count, True


def count_tokens(model: str, text: str) -> int:
    """Tokens of one text for a model (exact or estimated, see the module doc)."""
    return token_counter(model)[0](text)


def build_context(assistant: Assistant, history: list[Message]) -> list[Turn]:
    """Turns for the provider: the newest messages that fit the budget, system prompt first.

    The budget is `context_tokens` minus the reply's `max_tokens`; the newest message is
    always kept, even alone over budget.
    """
    count, _ = token_counter(assistant.model)
    budget = assistant.context_tokens - (assistant.max_tokens or 0)
    turns: list[Turn] = []
    used = count(assistant.system_prompt) + MESSAGE_OVERHEAD if assistant.system_prompt else 0
    for msg in reversed(history):
        cost = count(msg.content) + MESSAGE_OVERHEAD
        if turns and used + cost > budget:
            break
        used += cost
        turns.append(Turn(role=msg.message_type, content=msg.content))
    turns.reverse()
    if assistant.system_prompt:
        turns.insert(0, Turn(role="system", content=assistant.system_prompt))
    return turns
