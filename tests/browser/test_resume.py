"""Reconnect and resume in the browser: a dropped network and a restarted server, mid-reply."""
from __future__ import annotations

import signal
import time

import pytest

from chatd.testing import ServerProcess, unique_name

from .helpers import PASSWORD, Tab

pytestmark = pytest.mark.browser

# /echo replies stream in 4-character deltas: "w001 " is one word per chunk and a duplicated or
# lost chunk shows as a broken sequence.
WORDS = "".join(f"w{i:03d} " for i in range(1, 121)).rstrip()


class Sampler:
    """Reads the streaming reply every few ms and records every distinct text it shows."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        self.seen: list[str] = []
        self.statuses: list[str] = []

    def sample(self) -> None:
        st = self.tab.last_reply_state()
        if st and (not self.seen or self.seen[-1] != st["text"]):
            self.seen.append(st["text"])
        status = self.tab.status()
        if not self.statuses or self.statuses[-1] != status:
            self.statuses.append(status)

    def assert_never_duplicated(self, expected: str) -> None:
        for text in self.seen:
            t = " ".join(text.split())
            assert expected.startswith(t), f"the page showed text that is not a prefix of the reply: {t[-80:]!r}"


def _follow(tab: Tab, sampler: Sampler, until, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sampler.sample()
        if until():
            sampler.sample()
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out; statuses {sampler.statuses}, last text {sampler.seen[-1:]}")


def _reply_settled(tab: Tab) -> bool:
    st = tab.last_reply_state()
    return bool(st and st["status"] not in ("streaming",))


def test_network_drop_mid_reply_resumes_without_duplicates(chatd_process, dropping_proxy, new_tab) -> None:
    server: ServerProcess = chatd_process(CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND=12)
    proxy = dropping_proxy(server.port)
    tab = new_tab(proxy.url).open()
    tab.register(unique_name())
    tab.send(f"/echo {WORDS}")
    sampler = Sampler(tab)
    _follow(tab, sampler, lambda: len((tab.last_reply_state() or {}).get("text", "")) > 60)
    before = proxy.accepted
    proxy.drop(refuse_for=1.5)  # chunks stream on while the page is cut off
    _follow(tab, sampler, lambda: tab.status() != "online", timeout=10)
    tab.shot("20-network-drop-offline")
    assert not tab.page.is_enabled("#send-button")
    _follow(tab, sampler, lambda: tab.status() == "online" and proxy.accepted > before, timeout=20)
    # After the reconnect the reply continues live (from active_streams), then completes.
    resumed_at = len(sampler.seen)
    _follow(tab, sampler, lambda: _reply_settled(tab))
    assert len(sampler.seen) - resumed_at >= 3, "the reply did not continue streaming after the reconnect"
    sampler.assert_never_duplicated(WORDS)
    assert " ".join(tab.reply_text(1).split()) == WORDS
    assert tab.last_reply_state()["status"] == "complete"
    assert "waiting" in sampler.statuses or "connecting" in sampler.statuses
    tab.shot("21-network-drop-resumed")
    assert not tab.errors, tab.errors


@pytest.mark.parametrize("mode", ["graceful", "grace-expires", "killed"])
def test_server_restart_mid_reply(chatd_process, new_tab, mode: str) -> None:
    env = {"CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": 15}
    if mode == "grace-expires":
        env["CHATD_SHUTDOWN_GRACE_S"] = 0.5
    server: ServerProcess = chatd_process(**env)
    tab = new_tab(server.url).open()
    name = unique_name()
    tab.register(name)
    tab.send(f"/echo {WORDS}")
    sampler = Sampler(tab)
    _follow(tab, sampler, lambda: len((tab.last_reply_state() or {}).get("text", "")) > 50)

    if mode == "killed":
        server.send_signal(signal.SIGKILL)
        server.wait()
    else:
        server.send_signal(signal.SIGTERM)
        # The server finishes (or, past the grace period, interrupts) the reply, then closes with 1001.
        _follow(tab, sampler, lambda: tab.status() != "online", timeout=30)
        server.wait()
    _follow(tab, sampler, lambda: tab.status() != "online", timeout=10)
    tab.page.fill("#composer-input", "draft kept while offline")
    assert not tab.page.is_enabled("#send-button")
    tab.shot(f"22-restart-{mode}-offline")
    server.start()
    _follow(tab, sampler, lambda: tab.status() == "online", timeout=30)
    assert tab.page.input_value("#composer-input") == "draft kept while offline"
    _follow(tab, sampler, lambda: _reply_settled(tab), timeout=20)
    time.sleep(0.5)
    sampler.sample()
    sampler.assert_never_duplicated(WORDS)
    final = " ".join(tab.reply_text(1).split())
    status = tab.last_reply_state()["status"]
    token = server.login(name, PASSWORD)
    cid = tab.page.evaluate("() => window.__chatd.activeKey")
    stored = server.api("GET", f"api/v1/conversations/{cid}/messages", token)["messages"][-1]
    if mode == "graceful":
        assert status == "complete" and final == WORDS
    else:
        assert status == "interrupted", status
        assert WORDS.startswith(final) and len(final) < len(WORDS)
        assert tab.page.locator(".msg-assistant .badge:has-text('Interrupted')").count() == 1
    # What the page shows is what the server stored: no text twice, none lost.
    assert final == " ".join(stored["content"].split())
    assert stored["status"] == status
    tab.shot(f"23-restart-{mode}-after")
    # The page is fully usable on the new process.
    tab.page.fill("#composer-input", "/echo back again")
    tab.page.press("#composer-input", "Enter")
    tab.wait_reply_done(2)
    assert tab.reply_text(2) == "back again"
    assert not tab.errors, tab.errors
    assert not tab.csp_violations()
