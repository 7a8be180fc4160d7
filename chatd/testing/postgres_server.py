"""A throwaway PostgreSQL server of its own (initdb in a tmp dir), for tests that stop and restart it.

Tests that take the database server away mid-reply must not stop the shared server on
127.0.0.1:5432 that every other test uses. As root, the cluster belongs to the `postgres`
account (PostgreSQL refuses to run as root).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (scripts/ensure_postgres.sh installs it)")
    return found


class PostgresServer:
    """`initdb` + `pg_ctl` on 127.0.0.1:port, trust auth, data in a fresh tmp dir; stop and start at will.

    The dir is made with `tempfile.mkdtemp` rather than under pytest's tmp_path, which the
    `postgres` account cannot enter; `remove()` stops the server and deletes it.
    """

    def __init__(self, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chatd-pg-"))
        self.port = port
        self.data = self.root / "pgdata"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        """The URL of its `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_postgres, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> PostgresServer:
        """Create the cluster (fsync off: a test server, thrown away afterwards)."""
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        return self

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop it now (`-m fast`: every client connection is cut, as in a restart)."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        """Whether its postmaster runs."""
        return subprocess.run([*self._as_postgres, _bin("pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True).returncode == 0

    def remove(self) -> None:
        """Stop it if it runs and delete its files."""
        if self.data.exists() and self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
