"""Fixtures for the browser tests: a real chatd process, Debian's Chromium driven by Playwright.

The server runs as a subprocess (`python -m chatd serve`) on a free 127.0.0.1 port with its own
data directory, so a test can stop it (SIGTERM or SIGKILL) and start it again on the same port
and data. Chromium is `/usr/bin/chromium` (scripts/setup_browser.sh); Playwright never downloads
a browser. Screenshots go to tests/browser/artifacts/ (git-ignored).
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("CHATD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ the server process


class ChatdProcess:
    """`python -m chatd serve` on a fixed port and data directory; restartable."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chatd.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._log.write(f"\n===== start #{self.starts + 1} =====\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatd", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError(f"chatd exited during start-up:\n{self.log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"chatd did not answer /healthz within {timeout}s:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reap()
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def _reap(self) -> None:
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # REST helpers (urllib; the tests' own view of the server)
    def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def login(self, username: str, password: str = PASSWORD) -> str:
        return self.api("POST", "api/v1/auth/login", body={"username": username, "password": password})["access_token"]


@pytest.fixture
def chatd_process(tmp_path: Path) -> Iterator[Callable[..., ChatdProcess]]:
    """Factory: start a chatd subprocess with extra CHATD_* environment; stopped after the test."""
    started: list[ChatdProcess] = []

    def make(**env: Any) -> ChatdProcess:
        server = ChatdProcess(tmp_path / f"chatd{len(started)}", {k: str(v) for k, v in env.items()})
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL if server.proc and server.proc.poll() is None else signal.SIGTERM)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatdProcess]:
    """One server for the tests that do not restart it (a quick demo assistant)."""
    server = ChatdProcess(tmp_path_factory.mktemp("chatd-shared"), {
        "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "40",
        "CHATD_RATE_MESSAGES": "200",
    })
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module (module scope: no sync Playwright alive while asyncio tests run)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/setup_browser.sh")
    if not (REPO / "static" / "dist" / "index.html").exists():
        pytest.fail("static/dist is not built: run scripts/setup_frontend.sh (make frontend)")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


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
    def open(self, url: str | None = None) -> "Tab":
        self.page.goto(url or self.base_url)
        self.page.wait_for_selector("#boot", state="hidden")
        return self

    def register(self, username: str, password: str = PASSWORD) -> None:
        self.page.wait_for_selector("#auth-view", state="visible")
        self.page.click("#tab-register")
        self.page.fill("#auth-username", username)
        self.page.fill("#auth-password", password)
        self.page.click("#auth-submit")
        self.wait_online()

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.page.wait_for_selector("#auth-view", state="visible")
        self.page.click("#tab-login")
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
        self.page.wait_for_function("(n) => document.querySelectorAll('#message-list .msg-assistant:not(.msg-typing)').length >= n", arg=n)

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


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Factory: a page in a fresh browser context (its own sessionStorage) or in a given one."""
    contexts: list[Any] = []

    def make(base_url: str, context: Any = None, **context_args: Any) -> Tab:
        if context is None:
            context_args.setdefault("viewport", {"width": 1280, "height": 800})
            context = browser.new_context(**context_args)
            contexts.append(context)
        return Tab(context.new_page(), base_url)

    yield make
    for ctx in contexts:
        ctx.close()


# ------------------------------------------------------------------ helpers for the network tests


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


@pytest.fixture
def canary() -> Iterator[CanaryServer]:
    server = CanaryServer()
    yield server
    server.close()


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
            if time.monotonic() < self.refuse_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
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

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
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
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
            upstream.sendall(new_head.encode("latin-1") + rest)
        except OSError:
            client.close()
            return
        self.accepted += 1
        with self.lock:
            self.conns.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)


@pytest.fixture
def prefix_proxy() -> Iterator[Callable[[int], PrefixProxy]]:
    made: list[PrefixProxy] = []

    def make(port: int) -> PrefixProxy:
        p = PrefixProxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def dropping_proxy() -> Iterator[Callable[[int], DroppingProxy]]:
    made: list[DroppingProxy] = []

    def make(port: int) -> DroppingProxy:
        p = DroppingProxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
