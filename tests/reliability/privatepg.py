"""A PostgreSQL cluster of the test's own, to stop and start at will.

Why: the outage tests restart PostgreSQL; the machine's shared server (5432) serves the
whole suite and other users, so it is never touched. This one is made by ``initdb`` in a
temporary directory, listens on its own loopback port with trust authentication, and is
removed at the end. PostgreSQL refuses to run as root: under root the commands run as
the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from bridge.devtools.testconfig import free_port

BIN = Path(os.environ.get("SANTEGUARD_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    return (BIN / "initdb").exists() and (os.geteuid() != 0 or _postgres_user() is not None)


def _postgres_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` in a directory of its own; ``dsn`` for database ``sg``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sg-outage-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = _postgres_user()
            assert user is not None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.dsn = f"postgres://postgres@127.0.0.1:{self.port}/sg"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(BIN / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self.start()
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-c", "CREATE DATABASE sg",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
            "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session at once, as a restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
