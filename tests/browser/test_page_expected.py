"""The page as people expect it: conversation URLs, line breaks, full names, one error with Retry."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatd.testing import ServerProcess, unique_name

from .helpers import Tab

pytestmark = pytest.mark.browser

LONG_NAME = "mistral-small3.1:24b-instruct-2503-q4_K_M"


def active_key(tab: Tab) -> str | None:
    return tab.page.evaluate("() => window.__chatd.activeKey")


def wait_active(tab: Tab, key: str) -> None:
    tab.page.wait_for_function("(k) => window.__chatd.activeKey === k", arg=key)
    tab.page.wait_for_function("(k) => { const c = window.__chatd.convs.get(k); return !!(c && c.loaded); }", arg=key)


def chat(tab: Tab, text: str, n: int) -> str:
    """Send `text` as the n-th reply's prompt in the open (or a new) chat; the conversation's key."""
    tab.send(text)
    tab.wait_reply_done(n)
    key = active_key(tab)
    assert key is not None
    return key


def test_reload_keeps_the_open_conversation_and_back_returns_to_the_previous(shared_server: ServerProcess,
                                                                           new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    first = chat(tab, "/echo the first conversation", 1)
    assert tab.page.url.endswith(f"#/c/{first}")
    tab.page.click("#new-chat")
    assert tab.page.url.endswith("#/")
    second = chat(tab, "/echo the second conversation", 1)
    assert second != first and tab.page.url.endswith(f"#/c/{second}")

    tab.page.reload()
    tab.wait_online()
    wait_active(tab, second)
    assert "the second conversation" in tab.reply_text(1)

    tab.page.go_back()  # the new chat became the second conversation: Back is the first one
    wait_active(tab, first)
    assert tab.page.url.endswith(f"#/c/{first}")
    tab.wait_reply_done(1)
    assert "the first conversation" in tab.reply_text(1)
    tab.page.go_forward()
    wait_active(tab, second)
    tab.wait_reply_done(1)
    assert "the second conversation" in tab.reply_text(1)

    # A bookmark opens its conversation in a fresh tab of the same browser session.
    other = new_tab(shared_server.url, context=tab.page.context)
    other.open(f"{shared_server.url}#/c/{first}")
    other.wait_online()
    wait_active(other, first)
    other.wait_reply_done(1)
    assert "the first conversation" in other.reply_text(1)
    assert not tab.errors and not other.errors, tab.errors + other.errors


def test_a_bookmark_of_a_conversation_you_cannot_see_says_so(shared_server: ServerProcess, new_tab) -> None:
    owner = new_tab(shared_server.url).open()
    owner.register(unique_name("owner"))
    key = chat(owner, "/echo private", 1)
    url = f"{shared_server.url}#/c/{key}"

    stranger = new_tab(url).open(url)
    stranger.register(unique_name("stranger"))
    stranger.page.wait_for_selector("#missing-state", state="visible")
    assert "Conversation not found" in stranger.page.inner_text("#missing-state")
    assert stranger.page.inner_text("#conversation-title") == "Conversation not found"
    assert stranger.page.locator("#empty-state").is_hidden()
    assert stranger.page.locator("#message-list .msg").count() == 0
    assert "private" not in stranger.page.inner_text("body")
    stranger.page.goto(f"{shared_server.url}#/c/no-such-conversation")
    stranger.page.wait_for_selector("#missing-state", state="visible")
    # Starting a new chat from there works.
    stranger.page.click("#missing-new-chat")
    stranger.page.wait_for_selector("#empty-state", state="visible")
    assert stranger.page.url.endswith("#/")
    stranger.send("/echo mine")
    stranger.wait_reply_done(1)
    assert stranger.page.locator("#missing-state").is_hidden()
    assert not stranger.errors, stranger.errors


def test_a_haiku_keeps_its_line_breaks(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    tab.send("Write a haiku about streaming")  # the demo answers with one: three lines, single newlines
    reply = tab.wait_reply_done(1)
    first = reply.locator(".msg-body p").first
    assert first.locator("br").count() == 2
    lines = first.inner_text().split("\n")
    assert lines == ["Tokens drift like snow", "each one lands before the next", "the reply takes shape"], lines
    tab.shot("20-haiku")


def test_suggestion_chips_show_what_the_page_renders(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    chips = tab.page.locator("#suggestions .suggestion")
    assert chips.count() == 3
    expected = {"code": ".code-block pre code", "table": ".table-wrap table", "WebSockets": "ol li"}
    for i in range(3):
        tab.page.click("#new-chat")
        label = tab.page.locator("#suggestions .suggestion").nth(i).inner_text()
        tab.page.locator("#suggestions .suggestion").nth(i).click()
        tab.page.press("#composer-input", "Enter")
        reply = tab.wait_reply_done(1)
        selector = next(sel for word, sel in expected.items() if word.lower() in label.lower()
                        or (word == "code" and "function" in label))
        assert reply.locator(f".msg-body {selector}").count() >= 1, (label, selector)


def test_full_assistant_names_at_360px(tmp_path: Path, chatd_process, new_tab) -> None:
    config = tmp_path / "chatd.toml"
    config.write_text(f"""
[providers.demo]
tokens_per_second = 400

[[assistants]]
id = "long"
name = "{LONG_NAME}"
provider = "demo"
model = "demo"
default = true

[[assistants]]
id = "demo"
name = "Demo assistant (offline)"
provider = "demo"
model = "demo"
""")
    server = chatd_process(CHATD_CONFIG=str(config))
    tab = new_tab(server.url, viewport={"width": 360, "height": 740}, device_scale_factor=2,
                  has_touch=True, is_mobile=True).open()
    tab.register(unique_name())
    tab.send("/echo hi")
    reply = tab.wait_reply_done(1)
    fit = tab.page.evaluate("""() => {
        const s = document.getElementById('assistant-picker');
        const cs = getComputedStyle(s);
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
        const text = s.options[s.selectedIndex].text;
        const ARROW = 20; // the native drop-down arrow inside the padding box
        const room = s.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - ARROW;
        const r = s.getBoundingClientRect();
        return {text, need: ctx.measureText(text).width, room, right: r.right, vw: innerWidth};
    }""")
    assert fit["text"] == LONG_NAME
    assert fit["need"] <= fit["room"], f"the picker cuts the name: {fit}"
    assert fit["right"] <= fit["vw"], fit
    author = reply.locator(".msg-author")
    assert author.inner_text() == LONG_NAME
    assert author.evaluate("(e) => e.scrollWidth <= e.clientWidth")
    tab.shot("21-full-names-360")
    wide = tab.page.evaluate("""() => [...document.querySelectorAll('body *')].filter((e) =>
        e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => e.tagName + '.' + e.className + ' ' +
        e.getBoundingClientRect().right)""")
    assert tab.page.evaluate("() => document.documentElement.scrollWidth") <= 360, wide


def test_retry_after_a_failed_reply_shows_one_error_and_answers(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    tab.send("a table please /flaky 3")  # the demo fails this prompt once, then answers it
    reply = tab.wait_reply_done(1)
    assert reply.get_attribute("data-status") == "error"
    errors = tab.page.locator(".msg-error")
    errors.first.wait_for()
    tab.page.wait_for_timeout(300)  # a toast would have shown by now
    assert errors.count() == 1, "one error, shown once"
    assert tab.page.locator("#toasts .toast").count() == 0, tab.page.inner_text("#toasts")
    tab.shot("22-reply-error")
    reply.locator(".btn-retry").click()
    tab.wait_reply_started(2)
    second = tab.wait_reply_done(2)
    assert second.get_attribute("data-status") == "complete"
    assert second.locator(".msg-body table").count() == 1
    assert reply.locator(".btn-retry").count() == 0, "answered: no Retry left on the failed reply"
    assert tab.page.locator("#message-list .msg-me").count() == 1, "the question stays once"
    token = tab.page.evaluate("() => window.__chatd.session.token")
    key = active_key(tab)
    body = shared_server.api("GET", f"/api/v1/conversations/{key}/messages?limit=50", token)
    users = [m for m in body["messages"] if m["message_type"] == "user"]
    assert len(users) == 1 and "/flaky 3" in users[0]["content"]
    assert not tab.errors, tab.errors


def test_retry_a_refused_send_resends_it_once(chatd_process, new_tab) -> None:
    server = chatd_process(CHATD_RATE_MESSAGES="1", CHATD_RATE_WINDOW_S="3",
                           CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND="400")
    tab = new_tab(server.url).open()
    tab.register(unique_name())
    chat(tab, "/echo one", 1)
    tab.send("/echo two")  # over the limit of one message per 3 s
    failed = tab.page.locator(".msg-me[data-status='failed']")
    failed.wait_for()
    assert re.search(r"Not sent: Slow down", failed.locator(".msg-error").inner_text())
    tab.page.wait_for_timeout(300)
    assert tab.page.locator(".msg-error").count() == 1
    assert tab.page.locator("#toasts .toast").count() == 0, tab.page.inner_text("#toasts")
    tab.page.wait_for_timeout(3200)  # the window passes
    failed.locator(".btn-retry").click()
    tab.wait_reply_done(2)
    assert "two" in tab.reply_text(2)
    assert tab.page.locator(".msg-me[data-status='failed']").count() == 0
    token = tab.page.evaluate("() => window.__chatd.session.token")
    body = server.api("GET", f"/api/v1/conversations/{active_key(tab)}/messages?limit=50", token)
    assert [m["content"] for m in body["messages"] if m["message_type"] == "user"] == ["/echo one", "/echo two"]
    assert not tab.errors, tab.errors
