"""The built package runs: build/lambda.zip unpacked alone, under the Lambda's Python, against moto and PostgreSQL.

Like the Lambda runtime, the interpreter sees only the zip's contents and boto3 (which
the runtime provides and the package leaves out); nothing of this checkout or its
virtualenv is on its path. It is pyenv's python3.12, the runtime's version; the test is
skipped, saying why, when that interpreter is missing or the package's native wheels
are for another machine.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.packaging import Target, build_package
from local.aws import LocalAws
from local.function import RUNTIME_SCRIPT, link_boto3
from local.postgres import EmbeddedPostgres
from tests.helpers import history, tables

pytestmark = pytest.mark.any_pg_version(
    "the built package runs under the runtime's Python; the SQL it applies is plain"
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "acme-dbmigrate-migrations"
RUNTIME = "3.12"
MIGRATIONS = {
    "postgres/202401010000_create_projectdb.up.sql": "CREATE DATABASE projectdb;\n",
    "projectdb/202401010100_create_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    "projectdb/202401010200_concurrent_index.up.sql": "CREATE INDEX CONCURRENTLY users_id ON users (id);\n",
}
# Runs inside the unpacked package, as the runtime would: import handler, call it, print the result.
INVOKE = """
import json, sys
import importlib.util
sys.path[:0] = sys.argv[1:3]
import handler, psycopg2, pglast
spec = importlib.util.spec_from_file_location("lambda_runtime", sys.argv[4])  # the stand-in's context
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
print(json.dumps({"imported_from": [m.__file__ for m in (handler, psycopg2, pglast)], "python": sys.version_info[:2]}))
print(json.dumps({"result": handler.handler(json.loads(sys.argv[3]), runtime.Context())}))
"""


def python312() -> str:
    """pyenv's python3.12, or skip naming what is missing."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"pyenv is not installed: cannot run the package under the runtime's Python {RUNTIME}")
    found = sorted(glob.glob(f"{root}/versions/{RUNTIME}.*/bin/python{RUNTIME}"))
    if not found:
        pytest.skip(f"pyenv has no Python {RUNTIME} (pyenv install {RUNTIME}): the package was not run")
    return found[-1]


def build_zip() -> Path:
    """build/lambda.zip, built by the project's own packaging for the default target (x86_64)."""
    target = Target()
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    if machine != target.architecture:
        pytest.skip(
            f"the package's native wheels are for {target.architecture} and this machine is {machine}: "
            "the zip was not run (its build and contents are checked elsewhere)"
        )
    return build_package(target=target).path


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(python3.12, the unpacked zip, a folder with boto3)."""
    python = python312()
    task = tmp_path_factory.mktemp("var-task")
    with zipfile.ZipFile(build_zip()) as archive:
        archive.extractall(task)
    return python, task, link_boto3(tmp_path_factory.mktemp("runtime-boto3"))


def invoke(
    unpacked: tuple[str, Path, Path], event: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    python, task, runtime = unpacked
    clean = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TZ")}
    return subprocess.run(
        [python, "-I", "-S", "-c", INVOKE, str(task), str(runtime), json.dumps(event), str(RUNTIME_SCRIPT)],
        cwd=task,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def function_env(aws: LocalAws, pg: EmbeddedPostgres) -> dict[str, str]:
    """The environment the stack gives the function, with the RDS-style secret in moto."""
    aws.bucket(BUCKET)
    aws.upload(BUCKET, MIGRATIONS, "migrations/")
    arn = aws.secretsmanager.create_secret(
        Name="rds!db-smoke", SecretString=json.dumps({"username": pg.user, "password": pg.password})
    )["ARN"]
    return {
        **aws.environ,
        "MIGRATIONS_BUCKET": BUCKET,
        "MIGRATIONS_PREFIX": "migrations",
        "DB_SECRET_ARN": arn,
        "DB_HOST": pg.host,
        "DB_PORT": str(pg.port),
        "LOG_LEVEL": "INFO",
    }


def test_the_unpacked_zip_applies_migrations_under_the_runtime_python(
    unpacked: tuple[str, Path, Path], function_env: dict[str, str], pg: EmbeddedPostgres
) -> None:
    run = invoke(unpacked, {"action": "migrate", "tf": {"action": "create", "prev_input": None}}, function_env)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]  # every line is JSON: logs and results
    loaded = next(line for line in lines if "imported_from" in line)
    assert loaded["python"] == [3, 12]
    assert all(path.startswith(str(unpacked[1])) for path in loaded["imported_from"]), loaded
    result = next(line["result"] for line in lines if "result" in line)
    assert [(d["name"], d["applied"]) for d in result["databases"]] == [
        ("postgres", [202401010000]),
        ("projectdb", [202401010100, 202401010200]),
    ]
    assert tables(pg, "projectdb") == ["users"]
    assert pg.password not in run.stdout + run.stderr
    assert any(line.get("message") == "file_done" for line in lines)


def test_a_failing_migration_fails_the_packaged_function_naming_the_file(
    unpacked: tuple[str, Path, Path], function_env: dict[str, str], aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    assert invoke(unpacked, {"action": "migrate"}, function_env).returncode == 0
    aws.upload(BUCKET, {"projectdb/202401010300_broken.up.sql": "SELECT 1;\nSELECT nope FROM users;\n"}, "migrations/")
    run = invoke(unpacked, {"action": "migrate"}, function_env)
    assert run.returncode != 0
    assert "SqlError: projectdb/202401010300_broken.up.sql:2" in run.stderr
    assert history(pg, "projectdb") == [(202401010100, "applied"), (202401010200, "applied")]
    assert pg.password not in run.stdout + run.stderr
