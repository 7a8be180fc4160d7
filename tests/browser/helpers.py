"""Helpers of the browser tests: a page object for chatd's web page, and network helpers.

`Tab` wraps one Playwright page (its network log, console, CSP violations and chat actions);
`CanaryServer` is an origin that must never be contacted; `DroppingProxy` and `PrefixProxy`
stand between the page and chatd to cut the network or serve chatd under a path prefix.
The fixtures that make them are in conftest.py; the chatd server is `chatd.testing.ServerProcess`.
"""
from __future__ import annotations

import http.server
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "correct horse battery"

# Records every CSP violation the page sees; Playwright injects it through the DevTools protocol,
# which CSP does not govern. `__xss` is where an injected payload would report itself.
INIT_SCRIPT = """
window.__cspViolations = [];
window.__xss = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


class Tab:
    """One page with its network log, console, CSP violations and chat helpers."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        page.add_init_script(INIT_SCRIPT)
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        page.set_default_timeout(15000)

    # -- navigation and accounts
    def open(self, url: str | None = None) -> Tab:
        self.page.goto(url or self.base_url)
        self.page.wait_for_selector("#boot", state="hidden")
        return self

    def register(self, username: str, password: str = PASSWORD) -> None:
        self._sign_in("#tab-register", username, password)

    def login(self, username: str, password: str = PASSWORD) -> None:
        self._sign_in("#tab-login", username, password)

    def _sign_in(self, tab: str, username: str, password: str) -> None:
        """Fill the sign-in form under `tab` (register or log in) and wait until online."""
        self.page.wait_for_selector("#auth-view", state="visible")
        self.page.click(tab)
        self.page.fill("#auth-username", username)
        self.page.fill("#auth-password", password)
        self.page.click("#auth-submit")
        self.wait_online()

    def wait_online(self, timeout: float = 15000) -> None:
        self.page.wait_for_selector("#chat-view", state="visible", timeout=timeout)
        self.page.wait_for_selector('#connection-status[data-state="online"]', timeout=timeout)

    def wait_joined(self) -> None:
        """The open conversation's subscription is live (`joined` received)."""
        self.page.wait_for_function(
            "() => { const s = window.__chatd; const c = s.convs.get(s.activeKey); return !!(c && c.joined); }")

    def status(self) -> str:
        return self.page.get_attribute("#connection-status", "data-state") or ""

    # -- chatting
    def send(self, text: str) -> None:
        self.page.wait_for_selector("#send-button:not([hidden])")
        self.page.fill("#composer-input", text)
        self.page.press("#composer-input", "Enter")

    def replies(self) -> Any:
        return self.page.locator("#message-list .msg-assistant:not(.msg-typing)")

    def reply_count(self) -> int:
        return self.replies().count()

    def wait_reply_started(self, n: int) -> None:
        self.page.wait_for_function(
            "(n) => document.querySelectorAll('#message-list .msg-assistant:not(.msg-typing)').length >= n", arg=n)

    def wait_reply_done(self, n: int, timeout: float = 30000) -> Any:
        """Wait for the n-th reply (1-based) to be settled; returns its locator."""
        self.page.wait_for_function(
            """(n) => { const r = document.querySelectorAll('#message-list .msg-assistant:not(.msg-typing)');
                  return r.length >= n && r[n - 1].dataset.status !== 'streaming'; }""", arg=n, timeout=timeout)
        return self.replies().nth(n - 1)

    def reply_text(self, n: int) -> str:
        return self.replies().nth(n - 1).locator(".msg-body").inner_text()

    def last_reply_state(self) -> dict:
        return self.page.evaluate("""() => {
            const r = [...document.querySelectorAll('#message-list .msg-assistant:not(.msg-typing)')].pop();
            if (!r) return null;
            const b = r.querySelector('.msg-body');
            return {status: r.dataset.status, text: b.innerText, typing: !!b.querySelector('.typing-dots')};
        }""")

    def csp_violations(self) -> list[str]:
        found = list(self.page.evaluate("() => window.__cspViolations || []"))
        found += [c for c in self.console if "Content Security Policy" in c or "Refused to" in c]
        return found

    def shot(self, name: str, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


class CanaryServer:
    """An HTTP server on another origin that records every request it gets (should get none)."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class DroppingProxy:
    """A TCP proxy in front of chatd that can cut every connection (a network drop, not a restart)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.refuse_until = 0.0
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.closed = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        """A new client connection (on the accepting thread): connect it upstream, unless refusing."""
        if time.monotonic() < self.refuse_until:
            client.close()
            return
        upstream = self._connect(client)
        if upstream is not None:
            self._relay(client, upstream)

    def _connect(self, client: socket.socket, first: bytes = b"") -> socket.socket | None:
        """A connection to chatd with `first` sent on it; None (and the client closed) when that fails."""
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
            if first:
                upstream.sendall(first)
        except OSError:
            client.close()
            return None
        return upstream

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes (on two threads)."""
        self.accepted += 1
        with self.lock:
            self.conns.update((client, upstream))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self.lock:
            self.conns.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def drop(self, refuse_for: float = 1.0) -> None:
        """Cut every open connection abruptly and refuse new ones for a while."""
        self.refuse_until = time.monotonic() + refuse_for
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            except OSError:
                pass
            self._close(s)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.drop(0)
        self.thread.join(5)


class PrefixProxy(DroppingProxy):
    """A minimal reverse proxy that serves chatd under a path prefix (like `location /chat/` in nginx).

    It rewrites the request line of each request (`GET /chat/x` → `GET /x`) and, except for
    WebSocket upgrades, forces `Connection: close` so every request comes with its own head.
    Requests outside the prefix get 404 from the proxy itself and are recorded in `outside`.
    """

    def __init__(self, target_port: int, prefix: str = "/chat/") -> None:
        self.prefix = prefix
        self.outside: list[str] = []
        super().__init__(target_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def _handle(self, client: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    client.close()
                    return
                head += data
        except OSError:
            client.close()
            return
        raw_head, rest = head.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ", 2)
        if not path.startswith(self.prefix):
            self.outside.append(path)
            client.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
            return
        upgrade = any(line.lower().startswith("upgrade:") for line in lines[1:])
        headers = [line for line in lines[1:] if upgrade or not line.lower().startswith("connection:")]
        if not upgrade:
            headers.append("Connection: close")
        new_head = "\r\n".join([f"{method} /{path[len(self.prefix):]} {version}", *headers]) + "\r\n\r\n"
        upstream = self._connect(client, new_head.encode("latin-1") + rest)
        if upstream is not None:
            self._relay(client, upstream)
