"""A real `chatd serve` process for the REST conformance and fuzz tests, with a user, a token and a conversation."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pytest

from chatd.testing import ServerProcess, http_json
from chatd.testing.util import PASSWORD

#: An access-log line: `413 POST /api/v1/auth/login (127.0.0.1) 3.52ms`.
ACCESS = re.compile(r"tornado\.access: (\d{3}) ")


@dataclass
class LiveChatd:
    """The running server, a user's token and one of the user's conversations."""

    server: ServerProcess
    token: str
    conversation_id: int

    def statuses(self) -> Counter[int]:
        """The status of every request the server logged, counted."""
        return Counter(int(s) for s in ACCESS.findall(self.server.log_path.read_text(errors="replace")))

    def problems(self) -> list[str]:
        """Log lines that show a failure: tracebacks, errors, uncaught exceptions."""
        lines = self.server.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if "Traceback" in line or " ERROR " in line or "Uncaught exception" in line]

    def assert_healthy(self) -> None:
        """The process still runs, is ready, and serves an ordinary sign-in and conversation."""
        assert self.server.running, self.server.log()
        assert http_json("GET", self.server.base + "/healthz")[0] == 200
        status, ready = http_json("GET", self.server.base + "/readyz")
        assert status == 200, ready
        status, body = http_json("POST", self.server.base + "/api/v1/auth/login",
                                 body={"username": "owner", "password": PASSWORD})
        assert status == 200, body
        status, body = http_json("POST", self.server.base + "/api/v1/conversations", body["access_token"],
                                 body={"title": "after"})
        assert status == 201, body


@pytest.fixture(scope="module")
def live_chatd(tmp_path_factory: pytest.TempPathFactory):
    """`chatd serve` on a free port (sign-in attempts unlimited: the tests sign in far more than a person)."""
    server = ServerProcess(tmp_path_factory.mktemp("live"), env={"CHATD_RATE_AUTH_ATTEMPTS": "1000000"})
    server.start()
    try:
        status, body = http_json("POST", server.base + "/api/v1/auth/register",
                                 body={"username": "owner", "password": PASSWORD})
        assert status == 201, body
        token = body["access_token"]
        status, body = http_json("POST", server.base + "/api/v1/conversations", token, body={"title": "first"})
        assert status == 201, body
        yield LiveChatd(server, token, body["conversation"]["id"])
    finally:
        server.stop()
