"""The opt-in PII redactor and the blocklist: units, chunk safety, and through a running chatd."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.errors import Filtered
from chatd.filters import FilterContext
from chatd.testing import test_settings
from chatd_filters import BlocklistFilter, PIIInbound, PIIOutbound
from chatd_filters.pii import Redactor, StreamRedactor, luhn_valid

SAMPLE = ("Mail bob.smith@example.co.uk or call (415) 555-0100, +44 20 7946 0958 or 020 7946 0958; "
          "card 4111 1111 1111 1111 and 5500-0000-0000-0004, not 4111 1111 1111 1112; "
          "on 2024-01-15 order 12345678 shipped, v1.2.3.")


def ctx(message_type: str = "user") -> FilterContext:
    """A filter context without settings: the filters are configured from their tables, once."""
    return FilterContext(user_id=1, conversation_id=1, message_type=message_type, settings=None)


def test_luhn():
    assert luhn_valid("4111111111111111") and luhn_valid("5500000000000004")
    assert not luhn_valid("4111111111111112")


def test_redactor_finds_emails_phones_and_luhn_valid_cards_only():
    out = Redactor().redact(SAMPLE)
    assert out == ("Mail [email redacted] or call [phone redacted], [phone redacted] or [phone redacted]; "
                   "card [card redacted] and [card redacted], not 4111 1111 1111 1112; "
                   "on 2024-01-15 order 12345678 shipped, v1.2.3.")


def test_redactor_kinds_and_replacement():
    r = Redactor(kinds=["email"], replacement="<{kind}>")
    assert r.redact("a@b.io 415-555-0100") == "<email> 415-555-0100"
    with pytest.raises(ValueError):
        Redactor(kinds=["ssn"])


@pytest.mark.parametrize("cut", range(1, 40))
def test_pattern_split_across_two_deltas_is_caught(cut):
    text = "reach me: jane.doe@mail.example.org or 4111-1111-1111-1111 now"
    s = StreamRedactor(Redactor())
    out = s.feed(text[:cut]) + s.feed(text[cut:]) + s.flush()
    assert out == "reach me: [email redacted] or [card redacted] now"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=80))
def test_any_split_gives_the_same_text_as_redacting_the_whole(sizes):
    r = Redactor()
    pieces, pos = [], 0
    for n in sizes:
        pieces.append(SAMPLE[pos:pos + n])
        pos += n
    pieces.append(SAMPLE[pos:])
    s = StreamRedactor(r)
    assert "".join(s.feed(p) for p in pieces) + s.flush() == r.redact(SAMPLE)


def test_stream_redactor_releases_ordinary_text_promptly():
    s = StreamRedactor(Redactor())
    assert s.feed("Hello there, how ") == "Hello there, how"  # only the pending " " is held
    assert s.feed("are you?\n") == " are you?\n"


def test_outbound_filter_is_off_unless_enabled():
    off = PIIOutbound({}).session(ctx())
    assert off.feed("a@b.io ") == "a@b.io " and off.flush() == ""
    on = PIIOutbound({"enabled": True}).session(ctx())
    assert on.feed("mail a@b.") + on.feed("io now") + on.flush() == "mail [email redacted] now"
    outbound_off = PIIOutbound({"enabled": True, "outbound": False}).session(ctx())
    assert outbound_off.feed("a@b.io ") == "a@b.io "


@pytest.mark.asyncio
async def test_inbound_redaction_is_opt_in():
    assert await PIIInbound({"enabled": True}).inbound("a@b.io", ctx()) == "a@b.io"
    assert await PIIInbound({"enabled": True, "inbound": True}).inbound("a@b.io", ctx()) == "[email redacted]"


@pytest.mark.asyncio
async def test_blocklist_words_patterns_and_message_types():
    f = BlocklistFilter({"words": ["Voldemort", "dark mark"], "patterns": [r"secret-\d+"]})
    assert await f.inbound("nothing here", ctx()) == "nothing here"
    assert await f.inbound("voldemorts", ctx()) == "voldemorts"  # whole words only
    for text in ("say VOLDEMORT!", "the Dark Mark rose", "code secret-42"):
        with pytest.raises(Filtered) as e:
            await f.inbound(text, ctx())
        assert e.value.code == "FILTERED" and "blocked term" in e.value.message
    assert await f.inbound("Voldemort", ctx(message_type="system")) == "Voldemort"
    assert await BlocklistFilter({}).inbound("Voldemort", ctx()) == "Voldemort"


@pytest.fixture
def chatd_settings(tmp_path):
    return test_settings(tmp_path, providers={"demo": {"tokens_per_second": 400, "echo_chunk": 3}},
                         plugins={"pii": {"enabled": True}, "blocklist": {"words": ["forbidden"],
                                                                         "reason": "it names a forbidden thing"}})


@pytest.mark.asyncio
async def test_through_chatd_replies_are_redacted_and_blocked_words_refused(chatd):
    token, conv, ws = await chatd.joined(assistant_id="demo")
    # The demo echoes in 3-character deltas: the email and card arrive split across many.
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "message_type": "user",
                                                    "content": "/echo write to bob@example.com, "
                                                               "card 4111 1111 1111 1111."}})
    frames = await ws.collect_until("message_added", timeout=10)
    streamed = "".join(f["data"]["content"] for f in frames if f["type"] == "stream_content")
    assert streamed == "write to [email redacted], card [card redacted]."
    assert frames[-1]["data"]["message"]["content"] == streamed
    await ws.send({"type": "send_message", "ref": "r1", "data": {"conversation_id": conv["id"],
                                                                  "message_type": "user",
                                                                  "content": "something Forbidden here"}})
    err = await ws.expect("error", timeout=5)
    assert err["data"]["code"] == "FILTERED" and "forbidden thing" in err["data"]["message"]
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{conv['id']}/messages", token)
    assert all("Forbidden" not in m["content"] for m in body["messages"])
