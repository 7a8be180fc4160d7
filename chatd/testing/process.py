"""A real `chatd serve` process on a free port, for tests that need signals, restarts or several processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from chatd.testing.util import PASSWORD, free_port, http_json


def use_server_tree(env: dict[str, str]) -> str | None:
    """Point `env` at the chatd tree named by CHATD_TEST_SERVER_TREE (say, an older commit, to show
    that a test fails there or to benchmark before and after); the directory to start servers in.

    `python -m` puts its working directory first on sys.path, ahead of PYTHONPATH, so the
    server must also start in that tree or it would import the chatd of the current one.
    """
    other = os.environ.get("CHATD_TEST_SERVER_TREE")
    if not other:
        return None
    env["PYTHONPATH"] = os.pathsep.join([other, os.path.join(other, "plugins")])
    return other

class ServerProcess:
    """`python -m chatd serve` on 127.0.0.1:<port> with its own data directory; restartable on the same port.

    The environment is this process's without the variables starting with `drop_env` (by default
    every `CHATD_*`), plus `env`. Output of every start is appended to `log_path`.
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None, port: int | None = None, *,
                 log_path: Path | None = None, drop_env: tuple[str, ...] = ("CHATD_",)) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(drop_env)}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.cwd = use_server_tree(self.env)
        self.env.update(env or {})
        self.log_path = log_path or self.data_dir / f"server-{self.port}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start and wait until `/healthz` answers; RuntimeError (with the log) when it does not."""
        assert self.proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== start #{self.starts} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatd", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self._reap()
                raise RuntimeError(f"chatd exited {code} during start-up:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"chatd did not answer /healthz within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    @property
    def base(self) -> str:
        """`http://127.0.0.1:<port>` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The web page's URL (`base` with a trailing slash)."""
        return self.base + "/"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/api/v1/chat/ws"

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The last 4000 characters of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        """Send a signal (SIGTERM: graceful shutdown) without waiting."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def term(self) -> None:
        """SIGTERM without waiting."""
        self.send_signal(signal.SIGTERM)

    def kill9(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        self.send_signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (killing it after `timeout`); its exit code."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reap()
        return code

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Stop the server if it runs (SIGKILL unless told otherwise); its exit code, None if not started."""
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

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `python -m chatd ARGS --data-dir DATA_DIR` with the server's environment; output captured as text."""
        return subprocess.run([sys.executable, "-m", "chatd", *args, "--data-dir", str(self.data_dir)],
                              input=input, text=True, env=self.env, check=True, capture_output=True)

    def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        """A blocking REST call (`path` relative to the root); the decoded body, AssertionError on HTTP errors."""
        status, payload = http_json(method, self.url + path.lstrip("/"), token, body)
        assert status < 400, f"{method} {path}: HTTP {status} {payload}"
        return payload

    def login(self, username: str, password: str = PASSWORD) -> str:
        """An access token for an existing user."""
        return self.api("POST", "api/v1/auth/login", body={"username": username, "password": password})["access_token"]
