"""`chatd backup`: a consistent copy of the SQLite store, taken while the server runs."""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from chatd.errors import ConfigError
from chatd.startup import StartupError


@dataclass(frozen=True)
class BackupResult:
    """What was copied: the file, its size, and the message count both sides agree on."""

    path: str
    size: int
    messages: int


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def backup_sqlite(source: str, target: str, overwrite: bool = False) -> BackupResult:
    """Copy `source` to `target` with SQLite's online backup API, then check the copy.

    The copy is one snapshot: the source is read inside one read transaction (WAL lets the
    server go on writing meanwhile), whose message count the copy must match. It is written
    to `target.partial` and renamed into place, so `target` is never a half-written file.
    """
    if not os.path.isfile(source):
        raise ConfigError(f"no SQLite store at {source} (data_dir / sqlite_path)")
    if os.path.exists(target) and not overwrite:
        raise ConfigError(f"{target} exists; choose another path or pass --force")
    partial = target + ".partial"
    try:
        os.remove(partial)
    except FileNotFoundError:
        pass
    try:
        src = sqlite3.connect(source, timeout=10, isolation_level=None)
        try:
            src.execute("BEGIN")  # one snapshot for the count and the copy
            expected = _count(src)
            dst = sqlite3.connect(partial, isolation_level=None)
            try:
                src.backup(dst)
            finally:
                dst.close()
            src.execute("COMMIT")
        finally:
            src.close()
        copy = sqlite3.connect(f"file:{partial}?mode=ro", uri=True)
        try:
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            got = _count(copy)
        finally:
            copy.close()
    except sqlite3.Error as e:
        _remove(partial)
        raise StartupError(f"backup of {source} failed: {e}") from None
    except OSError as e:
        _remove(partial)
        raise StartupError(f"cannot write {target}: {e.strerror or e}") from None
    if check != "ok" or got != expected:
        _remove(partial)
        raise StartupError(f"the copy does not check out (quick_check {check!r}, {got} messages, expected {expected})")
    os.replace(partial, target)
    return BackupResult(target, os.path.getsize(target), got)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
