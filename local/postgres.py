"""A throwaway PostgreSQL server on 127.0.0.1: the local stand-in for RDS.

Used by the tests, the benchmarks and the local deploy. It runs the server binaries
of one major version (``PG_VERSION``, by default the stack's engine version; see
``local/pg_binaries.py`` for where they are found), in a temporary data directory,
on a free port, with password authentication like RDS. ``initdb`` refuses to run as
root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from local.net import free_port
from local.pg_binaries import PostgresNotInstalledError, binaries_major, find_bindir, find_client_bindir

__all__ = ["EmbeddedPostgres", "PostgresNotInstalledError", "find_bindir"]

SERVICE_USER = "postgres"
SUPERUSER = "postgres"
# A port found free (free_port) can be taken by another process before the server binds it;
# a server whose port was not given starts again this many times on a new one.
PORT_ATTEMPTS = 3

# Settings for a disposable server: durability off makes DDL-heavy tests several
# times faster and changes nothing a migration can observe.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


def _reachable_by_service_user(bindir: Path, major: int) -> Path:
    """``bindir``, or a world-readable copy of its installation when the service user cannot run it.

    As root the server runs as ``postgres``, which cannot reach binaries installed in a
    private folder (a clone under ``/root``, say). The copy (``bin``, ``lib``, ``share``
    beside each other, as packaged) goes to the temporary folder once per installation.
    """
    probe = ["runuser", "-u", SERVICE_USER, "--", "test", "-x", str(bindir / "postgres")]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return bindir
    install = bindir.parent
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"dbmigrate-pg{major}-{digest}"
    if not (copy / bindir.name / "postgres").is_file():
        staging = Path(tempfile.mkdtemp(prefix=f"{copy.name}-", dir=copy.parent))
        staging.chmod(0o755)
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(install / part, staging / part, symlinks=True)
        if copy.exists():  # another process made it meanwhile
            shutil.rmtree(staging)
        else:
            staging.replace(copy)
    return copy / bindir.name


class EmbeddedPostgres:
    """A PostgreSQL server in a temporary folder; ``start()``, use ``url()``, ``stop()``.

    ``settings`` are passed as ``-c name=value`` to the server on top of
    FAST_SETTINGS. The server keeps its data across ``stop()``/``start()`` (to test a
    database that goes away mid-run) until ``destroy()`` removes the folder.
    """

    def __init__(self, *, settings: Mapping[str, str] | None = None, port: int | None = None, tls: bool = True):
        self.bindir = find_bindir()
        self.major = binaries_major(self.bindir)
        self.client_bindir = find_client_bindir(self.major)
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.port = port or free_port()
        self._port_chosen_here = port is None  # and never started on: restart() keeps the port
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.password = secrets.token_hex(12)
        self._root = Path(tempfile.mkdtemp(prefix="dbmigrate-pg-"))
        self.data_dir = self._root / "data"
        self.log_file = self._root / "server.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            self.bindir = _reachable_by_service_user(self.bindir, self.major)
        self._initialized = False
        self.tls = tls
        self.ca_file = self._root / "ca.crt"
        """The CA that signed the server's certificate (with ``tls``): ``sslrootcert`` for verify-full."""

    # -- lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        """Create the cluster on first use, start the server and wait until it accepts."""
        if not self._initialized:
            self._initdb()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            logged = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._pg_ctl_start(timeout)
                break
            except RuntimeError:
                taken = b"Address already in use" in self.log_file.read_bytes()[logged:]
                if not (taken and self._port_chosen_here) or attempt == PORT_ATTEMPTS:
                    raise
                self.port = free_port()
        self._port_chosen_here = False
        self._wait_ready(timeout)
        return self

    def _pg_ctl_start(self, timeout: float) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in sorted(self.settings.items()))
        options += f" -c listen_addresses={self.host} -p {self.port} -k {self._root}"
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
            ],
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate); the data stays."""
        if self.data_dir.joinpath("postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"])

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server (``mode``: fast or immediate, as a crash) and start it again on the same port."""
        self.stop(mode)
        self.start(timeout)

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- addresses ---------------------------------------------------------------------
    def url(self, database: str = "{database}") -> str:
        """A connection URL; the default keeps the ``{database}`` placeholder of a template."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq keyword DSN for one database."""
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={database}"

    def psql(self, database: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the server's own psql against ``database``; raises on a non-zero exit."""
        env = {**os.environ, "PGPASSWORD": self.password}
        command = [
            str(self.client_bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            *args,
        ]
        return subprocess.run(command, input=input, env=env, capture_output=True, text=True, check=True)

    # -- internals ---------------------------------------------------------------------
    def _initdb(self) -> None:
        self._root.chmod(0o755)
        self.data_dir.mkdir(mode=0o700)
        pwfile = self._root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            entry = pwd.getpwnam(SERVICE_USER)
            for path in (self._root, self.data_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        pwfile.unlink()
        if self.tls:
            self._certificate()
        self._initialized = True

    def _certificate(self) -> None:
        """A CA of its own and a server certificate it signs for 127.0.0.1 and localhost, so that
        clients can verify the server (``sslmode=verify-full``) with ``ca_file`` as they do with RDS."""
        ca_key, cert, key = self._root / "ca.key", self.data_dir / "server.crt", self.data_dir / "server.key"
        request, extensions = self._root / "server.csr", self._root / "server.ext"
        extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        if self._as_root:
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(extensions, entry.pw_uid, entry.pw_gid)
        new_key = ["-newkey", "rsa:2048", "-nodes"]
        ca_subject = ["-subj", "/CN=dbmigrate local CA", "-days", "2"]
        self._run(["openssl", "req", "-x509", *new_key, *ca_subject, "-keyout", str(ca_key), "-out", str(self.ca_file)])
        self._run(
            ["openssl", "req", "-new", *new_key, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(request)]
        )
        signing = ["-CA", str(self.ca_file), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2"]
        self._run(
            ["openssl", "x509", "-req", "-in", str(request), *signing, "-extfile", str(extensions), "-out", str(cert)]
        )
        key.chmod(0o600)
        ca_key.unlink()
        self.settings = {**self.settings, "ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)}

    def _run(self, command: list[str]) -> None:
        if self._as_root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command[:4])} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log[-2000:]}"
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not accept connections on {self.host}:{self.port} within {timeout} s")
