"""The stores the contract suite runs against: each gives a fresh, empty database and its URL.

SQLite: a file in the test's tmp dir. PostgreSQL: the server at CHATD_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/postgres); each test creates its own database
and drops it afterwards. A back-end joins by adding one entry to BACKENDS.
"""
from __future__ import annotations

import contextlib
import os
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


BACKENDS: dict[str, Callable[[Path], Any]] = {
    "sqlite": sqlite_database,
    "postgres": postgres_database,
}
