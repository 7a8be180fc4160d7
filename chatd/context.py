"""The history a provider sees: system prompt first, trimmed to the assistant's context budget.

Token counting: for a model tiktoken knows (OpenAI's, e.g. `gpt-4o` → `o200k_base`), the
real tokenizer counts, plus OpenAI's per-message overhead of 4 tokens — when tiktoken (the
`openai` extra) is installed and the encoding file is in tiktoken's cache
(`TIKTOKEN_CACHE_DIR`; `chatd serve` defaults it to `<data_dir>/tiktoken`). The server never
downloads an encoding: `chatd fetch-tokenizers` does, once per machine. At start-up
(`prepare_tokenizers`) a cached encoding loads in the background (counting by estimate until
it is ready), and an assistant whose encoding is not cached is named once in the log, with
the estimate used for it. For other models (Claude, local models) the documented estimate
is one token per four characters, rounded up — close for English prose, low for code and
for languages without spaces, so budgets should leave margin.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

from chatd.models import Message
from chatd.providers import Assistant, Turn

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # a documented estimate when no tokenizer is known for the model
MESSAGE_OVERHEAD = 4  # role and separators per message (OpenAI's chat format spends 3 to 4)

#: Where tiktoken fetches each encoding chatd can find in its cache (the cache key is the URL's SHA-1).
ENCODING_URLS = {name: f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
                 for name in ("o200k_base", "cl100k_base", "p50k_base", "r50k_base")}
ENCODING_URLS["p50k_edit"] = ENCODING_URLS["p50k_base"]
ENCODING_URLS["o200k_harmony"] = ENCODING_URLS["o200k_base"]

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


def cache_dir() -> str:
    """tiktoken's cache directory, as tiktoken itself picks it."""
    return (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
            or os.path.join(tempfile.gettempdir(), "data-gym-cache"))


def is_cached(name: str) -> bool:
    """Whether tiktoken can load this encoding from its cache, without the network."""
    url = ENCODING_URLS.get(name)
    return url is not None and os.path.isfile(os.path.join(cache_dir(), hashlib.sha1(url.encode()).hexdigest()))


def prepare_tokenizers(models: Iterable[tuple[str, str]]) -> list[str]:
    """At start-up, for (assistant id, model) pairs: load cached encodings, say once which use the estimate.

    Returns the ids of the assistants counted by estimate although tiktoken knows their model.
    """
    uncached: dict[str, list[str]] = {}
    for assistant_id, model in models:
        name = encoding_name(model)
        if name is None:
            continue
        if is_cached(name):
            load_encoding(name)
        else:
            uncached.setdefault(name, []).append(assistant_id)
    for name, ids in uncached.items():
        log.info("tokenizer %s is not in tiktoken's cache (%s): token budgets of %s use the estimate "
                 "(1 token per %d characters); run `chatd fetch-tokenizers` once to count exactly",
                 name, cache_dir(), ", ".join(ids), CHARS_PER_TOKEN)
    return [i for ids in uncached.values() for i in ids]


def fetch_tokenizer(name: str) -> None:
    """Download an encoding into tiktoken's cache (the only place chatd lets tiktoken use the network)."""
    import tiktoken

    tiktoken.get_encoding(name)


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
    """The encoding if loaded; else, when it is cached, start loading it in the background (or wait).

    An encoding missing from the cache is never downloaded here: it counts by estimate.
    """
    with _lock:
        if name in _encodings:
            return _encodings[name]
        if not is_cached(name):
            _encodings[name] = None
            return None
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
