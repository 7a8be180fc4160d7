"""Conversation titles: generated after the first exchange, plain fallback, never over a user's rename."""
from __future__ import annotations

import pytest
from llm_fakes import Behavior

from chatd import chat, titles
from chatd.testing import test_settings


def test_default_title_matches_the_chat_service():
    assert titles.DEFAULT_TITLE == chat.DEFAULT_TITLE


def test_fallback_title_is_the_first_words():
    assert titles.fallback_title("How do I  bake bread at home quickly?") == "How do I bake bread at…"
    assert titles.fallback_title("Short one") == "Short one"
    assert titles.fallback_title("   ") == titles.DEFAULT_TITLE
    assert len(titles.fallback_title("x" * 200)) == titles.TITLE_MAX_CHARS


def test_clean_title():
    assert titles.clean_title('"Baking Bread at Home."\nextra') == "Baking Bread at Home"
    assert titles.clean_title("Title: **Trip plans**") == "Trip plans"
    assert titles.clean_title("   \n") == ""


@pytest.fixture
def chatd_settings(tmp_path, fake_llm):
    return test_settings(tmp_path, providers={
        "compat": {"type": "openai", "base_url": fake_llm.openai_url, "api_key": "sk-x", "max_retries": 0}},
        assistants=[{"id": "gpt", "name": "GPT", "provider": "compat", "model": "gpt-4o-mini"}])


async def first_exchange(chatd, content: str, title: str | None = None):
    token, conv, ws = await chatd.joined(**({"title": title} if title else {}))
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": content,
                                                    "message_type": "user"}})
    await ws.expect("message_added", timeout=10, where=lambda f: f["data"]["message"]["message_type"] == "assistant")
    return token, conv, ws


@pytest.mark.asyncio
async def test_failed_title_generation_falls_back_to_first_words(chatd, fake_llm):
    fake_llm.push(Behavior(deltas=["An answer."]), Behavior(kind="status", status=500, body={"error": {}}))
    token, conv, ws = await first_exchange(chatd, "Plan a three day trip to Lisbon in May please")
    upd = await ws.expect("conversation_updated", timeout=10,
                          where=lambda f: f["data"]["conversation"]["title"] != "New conversation")
    assert upd["data"]["conversation"]["title"] == "Plan a three day trip to…"
    assert upd["data"]["seq"] == 3  # a change of the conversation: it takes the next seq


@pytest.mark.asyncio
async def test_a_titled_conversation_is_left_alone(chatd, fake_llm):
    token, conv, ws = await first_exchange(chatd, "hello", title="My own title")
    frames = await ws.quiet(0.5)
    assert all(f["data"]["conversation"]["title"] == "My own title" for f in frames
               if f["type"] == "conversation_updated")
    assert len(fake_llm.requests) == 1  # no title request


@pytest.mark.asyncio
async def test_only_the_first_exchange_is_titled(chatd, fake_llm):
    token, conv, ws = await first_exchange(chatd, "first question")
    await ws.expect("conversation_updated", timeout=10,
                    where=lambda f: f["data"]["conversation"]["title"] != "New conversation")
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "second",
                                                    "message_type": "user"}})
    await ws.expect("message_added", timeout=10, where=lambda f: f["data"]["message"]["message_type"] == "assistant")
    await ws.quiet(0.3)
    assert len(fake_llm.requests) == 3  # reply, title, reply
