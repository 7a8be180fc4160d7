"""The stores the contract suite runs against: each gives a fresh, empty database and its URL.

SQLite: a file in the test's tmp dir. PostgreSQL: the server at CHATD_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/postgres); each test creates its own database
and drops it afterwards. MongoDB: the server at CHATD_TEST_MONGODB_URL when it is set, otherwise
an nx-27017 server (a MongoDB-wire-compatible server on SQLite; no mongod on this machine kind)
started once per test session on a free 127.0.0.1 port; each test uses its own database, dropped
afterwards. A back-end joins by adding one entry to BACKENDS.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from chatd.testing.util import POSTGRES_ADMIN_URL, postgres_url


@contextlib.asynccontextmanager
async def sqlite_database(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh SQLite file's URL."""
    yield f"sqlite:///{tmp_path / 'contract.sqlite3'}"


@contextlib.asynccontextmanager
async def postgres_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database created for this test on the PostgreSQL server, dropped afterwards."""
    import asyncpg

    name = f"chatd_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield postgres_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


MONGODB_URL = os.environ.get("CHATD_TEST_MONGODB_URL", "")


class NxServer:
    """An nx-27017 subprocess on a free 127.0.0.1 port with its data in a tmp dir (one per test session)."""

    _running: NxServer | None = None

    def __init__(self, data_dir: str | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="chatd-nx27017-")
        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        os.makedirs(self.data_dir, exist_ok=True)
        exe = os.path.join(os.path.dirname(sys.executable), "nx-27017")
        self.log_path = os.path.join(self.data_dir, "nx-27017.log")
        self.proc = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", os.path.join(self.data_dir, "db"),
             "--log-file", self.log_path, "--pid-file", os.path.join(self.data_dir, "nx-27017.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nx-27017 exited with {self.proc.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nx-27017 did not listen within 20 s") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        """The server's URL, without a database."""
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self, keep_data: bool = False) -> None:
        """Stop the server and (unless kept for a restart) remove its data."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @classmethod
    def shared(cls) -> NxServer:
        """The session's server, started on first use and stopped when the test process exits."""
        if cls._running is None:
            cls._running = cls()
            atexit.register(cls._running.stop)
        return cls._running


def mongodb_server_url() -> str:
    """The MongoDB server the tests use: CHATD_TEST_MONGODB_URL, else the session's nx-27017."""
    return MONGODB_URL.rstrip("/") if MONGODB_URL else NxServer.shared().url


def mongodb_url(database: str) -> str:
    """The server URL naming a database (options in the URL are kept)."""
    base = mongodb_server_url()
    host, sep, query = base.partition("?")
    host = host.split("://", 1)[0] + "://" + host.split("://", 1)[1].split("/", 1)[0]
    return f"{host}/{database}" + (f"?{query}" if sep else "")


@contextlib.asynccontextmanager
async def mongodb_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own on the MongoDB server, dropped afterwards."""
    from pymongo import AsyncMongoClient

    url = mongodb_url(f"chatd_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    try:
        yield url
    finally:
        client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
        try:
            await client.drop_database(client.get_default_database())
        finally:
            await client.close()


BACKENDS: dict[str, Callable[[Path], Any]] = {
    "sqlite": sqlite_database,
    "postgres": postgres_database,
    "mongodb": mongodb_database,
}
