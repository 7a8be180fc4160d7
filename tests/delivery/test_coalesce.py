"""Issue 3 item 6: many tiny deltas produced quickly go out as fewer stream_content frames."""
from __future__ import annotations

import pytest

from chatd.testing import ScriptedPlugin, scripted_settings, test_settings

DELTAS = [chr(ord("a") + i % 26) for i in range(3000)]  # 3000 one-character deltas, no pause


@pytest.fixture
def chatd_plugins():
    return [ScriptedPlugin()]


async def _frames_for_one_reply(chatd):
    _, conv, ws = await chatd.joined()
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "go",
                                                    "message_type": "user"}})
    frames = await ws.collect_until("message_added", timeout=20,
                                    where=lambda f: f["data"]["message"]["message_type"] == "assistant")
    chunks = [f["data"] for f in frames if f["type"] == "stream_content"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))  # gap-free
    text = "".join(c["content"] for c in chunks)
    assert text == "".join(DELTAS) == frames[-1]["data"]["message"]["content"]
    return chunks


@pytest.mark.asyncio
@pytest.mark.parametrize("chatd_settings", [{"coalesce_ms": 15.0, "coalesce_max_chars": 512}], indirect=True)
async def test_tiny_deltas_are_coalesced(chatd):
    chunks = await _frames_for_one_reply(chatd)
    print(f"\ncoalescing on: {len(DELTAS)} deltas -> {len(chunks)} stream_content frames")
    assert len(chunks) < len(DELTAS) / 5
    assert max(len(c["content"]) for c in chunks) <= 512  # the size cap holds


@pytest.mark.asyncio
@pytest.mark.parametrize("chatd_settings", [{"coalesce_ms": 0.0}], indirect=True)
async def test_without_a_window_every_delta_is_a_frame(chatd):
    chunks = await _frames_for_one_reply(chatd)
    print(f"\ncoalescing off: {len(DELTAS)} deltas -> {len(chunks)} stream_content frames")
    assert len(chunks) == len(DELTAS)


@pytest.fixture
def chatd_settings(request, tmp_path):
    return test_settings(tmp_path, **scripted_settings(DELTAS, delay=0.0), **request.param)
