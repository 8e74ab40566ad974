"""A throwaway PostgreSQL cluster for tests: Debian's initdb + pg_ctl on a Unix socket in a temp dir.

Runs as the `postgres` user (or `nobody`) when started by root, since initdb refuses root; it
listens on no TCP port (`listen_addresses=''`). `create_database()` gives each test its own.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PASSWORD_ROLE = "pxelab_pw"
"""The one role that must give a password (see `add_password_role`); all others are trusted."""


class PostgresMissing(RuntimeError):
    """Debian's postgresql package is not installed (scripts/setup.sh installs it)."""


def postgres_bin() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` that has initdb."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise PostgresMissing(
            "no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql (scripts/setup.sh)"
        )
    return Path(found[-1]).parent


def _runas() -> str | None:
    """The user to run the server as when we are root: `postgres` if it exists, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresMissing("running as root and there is neither a postgres nor a nobody user")


class PostgresCluster:
    """One initdb'ed cluster in a temp dir; `url(db)` names a database on its socket."""

    def __init__(self, bindir: Path | None = None, *, fsync: bool = False) -> None:
        self.bindir = bindir or postgres_bin()
        self.fsync = fsync
        """Whether the server flushes to disk (off for tests: faster, and nothing to keep)."""
        self.dir = Path(tempfile.mkdtemp(prefix="pxelab-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.user = _runas()
        self._names = itertools.count(1)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def socket_dir(self) -> Path:
        return self.dir

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )
        return result

    def start(self) -> None:
        """initdb (first time) and start the server; returns when it accepts connections."""
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                "-E", "UTF8",
            )  # fmt: skip
            # every role may connect without a password, except PASSWORD_ROLE (to test refusals)
            hba = f"local all {PASSWORD_ROLE} scram-sha-256\nlocal all all trust\n"
            (self.data / "pg_hba.conf").write_text(hba)
        fsync = "on" if self.fsync else "off"
        options = f"-k {self.dir} -c listen_addresses='' -c fsync={fsync} -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stop (fast: clients are disconnected) and start again."""
        self.stop()
        self.start()

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL with psql; its unaligned, tuples-only output."""
        result = self._run(
            "psql", "-h", str(self.dir), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
            "-A", "-t", "-c", sql,
        )  # fmt: skip
        return result.stdout.strip()

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"test{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def add_password_role(self, password: str, owns: str) -> None:
        """Create (or update) PASSWORD_ROLE with this password, owner of database `owns`."""
        verb = (
            "ALTER"
            if self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{PASSWORD_ROLE}'")
            else "CREATE"
        )
        self.psql(f"{verb} ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{password}'")
        self.psql(f"ALTER DATABASE {owns} OWNER TO {PASSWORD_ROLE}")

    def url(self, db: str) -> str:
        return f"postgresql://postgres@/{db}?host={self.dir}"

    def destroy(self) -> None:
        """Stop the server (if running) and remove the directory."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster(*, fsync: bool = False) -> Iterator[PostgresCluster]:
    """A started cluster, destroyed on exit (`fsync` on for benchmarks that count durability)."""
    cluster = PostgresCluster(fsync=fsync)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
