"""The demo assistant: markdown that depends on the prompt, and its scripting commands."""
from __future__ import annotations

import pytest
from provider_helpers import drive, make_request

from chatd_demo import DemoProvider


@pytest.fixture
def demo() -> DemoProvider:
    return DemoProvider({"tokens_per_second": 2000})


@pytest.mark.asyncio
@pytest.mark.parametrize("prompt,expected", [
    ("Write a Python function that merges two sorted lists", "```python\ndef merge_sorted("),
    ("Give me a markdown table of three sorting algorithms", "| Algorithm | Average | Worst | Stable |\n|---|"),
    ("Explain how WebSockets differ from long polling", "\n1. **The client opens one connection**"),
    ("Write a haiku about streaming", "Tokens drift like snow\neach one lands before the next\nthe reply takes shape"),
    ("Hello there", 'You said: "Hello there".\n\nI am the **offline demo assistant**'),
])
async def test_the_reply_markdown_depends_on_the_prompt(demo, prompt, expected):
    out = await drive(demo, make_request("demo", user=prompt))
    assert out.error is None and expected in out.text
    assert "OPENAI_API_KEY" in out.text  # every reply says how to use a real model
    assert out.completion.usage.completion_tokens == len(out.deltas) >= 40


@pytest.mark.asyncio
async def test_the_suggestion_chips_of_the_page_each_get_their_own_markdown(demo):
    chips = ["Explain how WebSockets differ from long polling",
             "Write a Python function that merges two sorted lists",
             "Give me a markdown table of three sorting algorithms"]
    texts = [(await drive(demo, make_request("demo", user=c))).text for c in chips]
    assert len(set(texts)) == 3


@pytest.mark.asyncio
async def test_echo_and_fail_still_script_it(demo):
    out = await drive(demo, make_request("demo", user="/echo exactly this"))
    assert out.text == "exactly this"
    out = await drive(demo, make_request("demo", user="please /fail 3"))
    assert out.error is not None and out.error.code == "PROVIDER_UNAVAILABLE"
    assert out.text == 'You said: "please'
    again = await drive(demo, make_request("demo", user="please /fail 3"))
    assert again.error is not None  # /fail fails every time


@pytest.mark.asyncio
async def test_flaky_fails_once_then_answers(demo):
    first = await drive(demo, make_request("demo", user="a table please /flaky 2"))
    assert first.error is not None and len(first.deltas) == 2
    second = await drive(demo, make_request("demo", user="a table please /flaky 2"))
    assert second.error is None and "| Algorithm |" in second.text
    other = await drive(demo, make_request("demo", user="another prompt /flaky 1"))
    assert other.error is not None  # once per prompt
