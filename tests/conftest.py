"""Shared fixtures: one throwaway PostgreSQL server per test session, reset per test."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

import aws_clients
from dbmigrate import s3source
from dbmigrate.s3source import BodyCache
from local.pg_binaries import binaries_major, find_bindir, find_client_bindir
from local.postgres import EmbeddedPostgres

# Fixtures shared across the suites, as plugins (never imported into a conftest).
pytest_plugins = ["tests.integration.aws"]


def pytest_report_header() -> str:
    """Say which PostgreSQL the session runs (PG_VERSION picks the major, default the stack's)."""
    try:
        server = find_bindir()
        major = binaries_major(server)
        return f"PostgreSQL {major}: server {server}, client tools {find_client_bindir(major)}"
    except (RuntimeError, ValueError) as exc:
        return f"PostgreSQL: {exc}"


@pytest.fixture(scope="session")
def main_stack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example stack as the main job synthesizes it, ``python main.py`` in a fresh process; its stack file.

    Once per session for the e2e tests (which play it) and tests/infra/test_reproducible_synth.py
    (which compares it with a synth in this process): the fresh process spends some 15 s loading
    cdktf and the provider. Its string-hash seed is another than this session's.
    """
    from local.demo import Demo  # noqa: PLC0415  only the sessions that synthesize import the deploy

    seed = "54321" if os.environ.get("PYTHONHASHSEED") == "12345" else "12345"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONHASHSEED", seed)
        return Demo(io.StringIO()).synthesize(tmp_path_factory.mktemp("cdktf.out")).file


@pytest.fixture(autouse=True)
def fresh_aws_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test makes its own AWS clients and reads its own files: the function's per-process
    clients would carry one test's hooks (and mocks) into the next, its bodies one test's reads."""
    monkeypatch.setattr(aws_clients, "_clients", {})
    monkeypatch.setattr(s3source, "BODIES", BodyCache())


def reset_cluster(server: EmbeddedPostgres) -> None:
    """Drop every database, role and schema a test may have created."""
    conn = psycopg2.connect(server.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1')")
        for (name,) in cur.fetchall():
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        cur.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
        cur.execute("CREATE SCHEMA public")
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname <> %s AND rolname NOT LIKE 'pg\\_%%'", (server.user,))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP OWNED BY "{name}" CASCADE')  # its grants, e.g. CREATE on postgres
            cur.execute(f'DROP ROLE "{name}"')
    conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL server (started once, removed at the end)."""
    server = EmbeddedPostgres().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg(pg_server: EmbeddedPostgres) -> EmbeddedPostgres:
    """The session's server, with only the ``postgres`` database, empty, at test start."""
    reset_cluster(pg_server)
    return pg_server
