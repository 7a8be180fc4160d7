"""Context trimming: a real tokenizer where tiktoken knows the model, the documented estimate otherwise."""
from __future__ import annotations

import time

import pytest
import tiktoken

from chatd import context
from chatd.models import Message
from chatd.providers import Assistant


@pytest.fixture
def byte_encoding():
    """A real tiktoken Encoding (one token per byte) registered as o200k_base, removed afterwards."""
    enc = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                            special_tokens={})
    saved = dict(context._encodings)
    context.register_encoding("o200k_base", enc)
    yield enc
    context._encodings.clear()
    context._encodings.update(saved)


def history(*texts: str) -> list[Message]:
    return [Message(id=i + 1, conversation_id=1, content=t, message_type="user" if i % 2 == 0 else "assistant",
                    sender_id=None, created_at="2026-01-01T00:00:00.000Z", status="complete", seq=i + 1)
            for i, t in enumerate(texts)]


def test_unknown_model_uses_the_estimate():
    count, exact = context.token_counter("claude-sonnet-4-5")
    assert not exact and count("abcdefgh") == 2 and count("abcdefghi") == 3 and count("") == 0


def test_known_model_uses_the_tokenizer_when_loaded(byte_encoding):
    assert context.encoding_name("gpt-4o-mini") == "o200k_base"
    count, exact = context.token_counter("gpt-4o-mini")
    assert exact and count("héllo") == 6  # bytes, not characters: the tokenizer counted
    assert context.count_tokens("gpt-4o-mini", "abcdefgh") == 8


def test_uncached_encoding_is_never_downloaded(monkeypatch, tmp_path):
    loads = []
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: loads.append(name))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached
    monkeypatch.setattr(context, "_encodings", {})
    monkeypatch.setattr(context, "_loading", set())
    assert context.prepare_tokenizers([("gpt", "gpt-4"), ("local", "llama3")]) == ["gpt"]
    count, exact = context.token_counter("gpt-4")
    assert not exact and count("abcdefgh") == 2
    time.sleep(0.1)
    assert loads == [] and context._encodings["cl100k_base"] is None  # no download, not tried again


def test_cached_encoding_loads_in_the_background_without_blocking(monkeypatch, tmp_path):
    import hashlib

    url = context.ENCODING_URLS["cl100k_base"]
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"cached")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    loads = []

    def slow_get_encoding(name):
        loads.append(name)
        time.sleep(0.5)
        raise ValueError("a broken cache file")

    monkeypatch.setattr(tiktoken, "get_encoding", slow_get_encoding)
    monkeypatch.setattr(context, "_encodings", {})
    monkeypatch.setattr(context, "_loading", set())
    start = time.monotonic()
    assert context.prepare_tokenizers([("gpt", "gpt-4")]) == []
    count, exact = context.token_counter("gpt-4")
    assert not exact and time.monotonic() - start < 0.2  # the load runs in the background
    context.token_counter("gpt-4")  # a second ask does not start a second load
    deadline = time.monotonic() + 3
    while "cl100k_base" not in context._encodings and time.monotonic() < deadline:
        time.sleep(0.02)
    assert context._encodings["cl100k_base"] is None and loads == ["cl100k_base"]
    assert context.token_counter("gpt-4")[1] is False  # not tried again


def test_build_context_trims_oldest_first_and_keeps_system_first(byte_encoding):
    a = Assistant(id="a", name="A", provider="p", model="gpt-4o", system_prompt="sys", context_tokens=60,
                  max_tokens=10)
    # budget 50: system 3+4, then newest first: 20+4, 20+4 would be 55 > 50
    turns = context.build_context(a, history("x" * 20, "y" * 20, "z" * 20))
    assert [t.content for t in turns] == ["sys", "z" * 20]
    a.context_tokens = 100
    turns = context.build_context(a, history("x" * 20, "y" * 20, "z" * 20))
    assert [t.content for t in turns] == ["sys", "x" * 20, "y" * 20, "z" * 20]
    assert [t.role for t in turns] == ["system", "user", "assistant", "user"]


def test_build_context_always_keeps_the_newest_message():
    a = Assistant(id="a", name="A", provider="p", model="local-llama", context_tokens=10)
    turns = context.build_context(a, history("old", "n" * 400))
    assert [t.content for t in turns] == ["n" * 400]


def test_estimate_budget_for_unknown_models():
    a = Assistant(id="a", name="A", provider="p", model="local-llama", context_tokens=30)
    # each message: 40 chars = 10 tokens + 4 overhead = 14; two fit in 30, three don't
    turns = context.build_context(a, history("a" * 40, "b" * 40, "c" * 40))
    assert [t.content[0] for t in turns] == ["b", "c"]
