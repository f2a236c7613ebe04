"""Who may change a schema, at the function's edge: ``down`` only when the stack enables it,
a migration role that is not the master user, and TLS verified against a CA bundle.

Through the real handler, on moto (bucket, secrets) and a real PostgreSQL whose certificate
is signed by a CA of its own (``EmbeddedPostgres.ca_file``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from dbmigrate.errors import ConfigError, DatabaseConnectError
from environment import VARIABLES
from handler import handler
from local.aws import LocalAws
from local.lambda_runtime import Context
from local.postgres import EmbeddedPostgres
from tests.helpers import query, tables

pytestmark = pytest.mark.every_pg_version

BUCKET = "acme-secure-migrations"
PREFIX = "migrations/"
FILES = {
    "postgres/0001_create_app.up.sql": "CREATE DATABASE app;\n",
    "app/0001_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    "app/0001_users.down.sql": "DROP TABLE users;\n",
}
DOWN = {"action": "down", "database": "app", "to": 0}


@pytest.fixture
def deployed(aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """The function's bucket with the files, and the environment the stack sets (no credentials yet)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    aws.bucket(BUCKET)
    aws.upload(BUCKET, FILES, PREFIX)
    for name, value in {
        "MIGRATIONS_BUCKET": BUCKET,
        "MIGRATIONS_PREFIX": PREFIX,
        "DB_HOST": pg.host,
        "DB_PORT": str(pg.port),
        "UPLOAD_SETTLE_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return aws


def role_secret(aws: LocalAws, pg: EmbeddedPostgres, name: str, *attributes: str) -> str:
    """A login role on the server with ``attributes`` and its secret in the RDS-managed format."""
    password = f"{name}-pw:/@?"
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        options = sql.SQL(" ").join(sql.SQL(attribute) for attribute in ("LOGIN", *attributes))
        cur.execute(
            sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(sql.Identifier(name), options, sql.Literal(password))
        )
        cur.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(name)))
    conn.close()
    secret = aws.secretsmanager.create_secret(
        Name=f"{name}-secret", SecretString=json.dumps({"username": name, "password": password})
    )
    return secret["ARN"]


def invoke(payload: dict[str, Any]) -> dict[str, Any]:
    return handler(payload, Context())


def test_down_is_refused_by_default_and_names_the_setting(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.url())
    invoke({"action": "migrate"})
    for setting in (None, "false"):
        if setting is not None:
            monkeypatch.setenv("ALLOW_DOWN", setting)
        with pytest.raises(ConfigError, match="ALLOW_DOWN is not true") as refused:
            invoke(DOWN)
        assert "allow_down" in str(refused.value)
        assert tables(pg, "app") == ["users"]


def test_down_runs_when_the_stack_enables_it(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.url())
    monkeypatch.setenv("ALLOW_DOWN", "true")
    invoke({"action": "migrate"})
    result = invoke(DOWN)
    assert [(d["name"], d["reverted"]) for d in result["databases"]] == [("app", [1])]
    assert tables(pg, "app") == []


def test_a_malformed_allow_down_is_a_config_error(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.url())
    monkeypatch.setenv("ALLOW_DOWN", "yes please")
    with pytest.raises(ConfigError, match="ALLOW_DOWN must be true or false"):
        invoke({"action": "status"})


def test_a_migration_role_with_createdb_creates_and_owns_what_it_migrates(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_SECRET_ARN", role_secret(deployed, pg, "migrator", "CREATEDB"))
    result = invoke({"action": "migrate"})
    assert [(d["name"], d["applied"]) for d in result["databases"]] == [("postgres", [1]), ("app", [1])]
    assert query(pg, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'") == [
        ("migrator",)
    ]
    assert query(pg, "app", "SELECT tableowner FROM pg_tables WHERE tablename = 'users'") == [("migrator",)]
    assert query(pg, "postgres", "SELECT rolsuper FROM pg_roles WHERE rolname = 'migrator'") == [(False,)]


def test_a_migration_role_without_createdb_fails_on_the_root_file_and_says_so(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_SECRET_ARN", role_secret(deployed, pg, "reader"))
    with pytest.raises(Exception, match="permission denied to create database") as failed:
        invoke({"action": "migrate"})
    assert "0001_create_app.up.sql" in str(failed.value)
    assert "app" not in _databases(pg)


def _databases(pg: EmbeddedPostgres) -> list[str]:
    return [row[0] for row in query(pg, "postgres", "SELECT datname FROM pg_database")]


def test_verify_full_against_the_servers_own_ca_migrates(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_SECRET_ARN", role_secret(deployed, pg, "migrator", "CREATEDB"))
    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    monkeypatch.setenv("DB_SSLROOTCERT", str(pg.ca_file))
    result = invoke({"action": "migrate"})
    assert [(d["name"], d["applied"]) for d in result["databases"]] == [("postgres", [1]), ("app", [1])]
    assert tables(pg, "app") == ["users"]


def test_verify_full_with_the_wrong_ca_fails_fast_naming_tls_verification(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with EmbeddedPostgres() as other:  # another server's CA: a valid bundle that did not sign ours
        wrong_ca = tmp_path / "wrong-ca.pem"
        wrong_ca.write_bytes(other.ca_file.read_bytes())
    monkeypatch.setenv("DB_SECRET_ARN", role_secret(deployed, pg, "migrator", "CREATEDB"))
    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    monkeypatch.setenv("DB_SSLROOTCERT", str(wrong_ca))
    started = time.monotonic()
    with pytest.raises(DatabaseConnectError) as refused:
        invoke({"action": "migrate"})
    elapsed = time.monotonic() - started
    message = str(refused.value)
    assert "TLS verification of the database server failed" in message
    assert "certificate verify failed" in message and str(wrong_ca) in message
    assert "global-bundle.pem" in message
    assert "migrator-pw" not in message
    assert elapsed < 5  # not the connect timeout: the handshake is refused at once
    assert "app" not in _databases(pg)


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [("missing.pem", "no CA certificates can be read"), ("not-pem.txt", "no CA certificates can be read")],
)
def test_a_missing_or_unreadable_ca_bundle_is_a_config_error_before_connecting(  # noqa: PLR0913  pytest passes each fixture and parameter by name
    deployed: LocalAws,
    pg: EmbeddedPostgres,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bundle: str,
    expected: str,
) -> None:
    (tmp_path / "not-pem.txt").write_text("hello\n")
    monkeypatch.setenv("DATABASE_URL", pg.url())
    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    monkeypatch.setenv("DB_SSLROOTCERT", str(tmp_path / bundle))
    with pytest.raises(ConfigError, match=expected):
        invoke({"action": "status"})


def test_verify_full_without_a_bundle_is_a_config_error(
    deployed: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.url())
    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    with pytest.raises(ConfigError, match="needs DB_SSLROOTCERT"):
        invoke({"action": "status"})
