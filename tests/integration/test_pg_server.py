"""The session's server is the PostgreSQL major version asked for, and its client tools can dump it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest

from local.pg_binaries import DEFAULT_MAJOR, find_bindir, requested_major
from local.postgres import EmbeddedPostgres

pytestmark = pytest.mark.every_pg_version


def test_the_session_server_runs_the_requested_major_version(pg: EmbeddedPostgres) -> None:
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    running = int(row[0]) // 10000
    assert running == pg.major
    # PG_BINDIR alone runs whatever that folder holds; otherwise PG_VERSION, or the default.
    if os.environ.get("PG_VERSION", "").strip() or not os.environ.get("PG_BINDIR", "").strip():
        assert running == requested_major()
    if not os.environ.get("PG_VERSION", "").strip():
        assert requested_major() == DEFAULT_MAJOR


def test_client_tools_are_not_older_than_the_server(pg: EmbeddedPostgres) -> None:
    for tool in ("psql", "pg_dump", "pg_dumpall"):
        out = subprocess.run([str(pg.client_bindir / tool), "--version"], capture_output=True, text=True, check=True)
        found = re.search(r"\)\s+(\d+)", out.stdout)
        assert found and int(found.group(1)) >= pg.major, out.stdout
    dump = subprocess.run(
        [str(pg.client_bindir / "pg_dump"), "--schema-only", pg.dsn()], capture_output=True, text=True, check=False
    )
    assert dump.returncode == 0, dump.stderr


def test_binaries_in_a_folder_only_root_can_enter_still_run_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only as root, where the server runs as the postgres user")
    installed = find_bindir()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    for part in ("bin", "lib", "share"):
        if (installed.parent / part).is_dir():
            shutil.copytree(installed.parent / part, private / part, symlinks=True)
    monkeypatch.setenv("PG_BINDIR", str(private / "bin"))
    server = EmbeddedPostgres(tls=False)
    try:
        server.start()
        assert server.psql("postgres", "-At", "-c", "SELECT 1").stdout.strip() == "1"
    finally:
        server.destroy()
        shutil.rmtree(server.bindir.parent, ignore_errors=True)
