"""Replay the synthesized stack locally: its objects into moto S3, its function environment
and invocation input into the real handler, run from the built zip on a real PostgreSQL.

Only what AWS decides at apply time is substituted (the bucket's generated name, the
secret's ARN, the database endpoint); everything else comes from the synthesized JSON.
With a python3.12 on the machine (pyenv), the exact x86_64 zip runs under it with only
the zip plus boto3 on its path, as on Lambda; without one, the handler runs from
``lambda_src`` with this interpreter, and the test output says so.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3

from infra.packaging import BuildResult
from local.postgres import EmbeddedPostgres
from tests.helpers import tables
from tests.integration.aws import Aws

from .conftest import ROOT, Synth
from .terraform_json import only, resources

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
RUN = """
import json, sys
sys.path[:0] = sys.argv[1].split(":")
import handler

class Context:
    function_name = "dbmigrate-migrate"
    def get_remaining_time_in_millis(self):
        return 300_000

print(json.dumps(handler.handler(json.loads(sys.argv[2]), Context())))
"""


def find_python312() -> str | None:
    """A working python3.12: pyenv's own build first (its shim may not be active), then PATH."""
    candidates = [str(path) for path in sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]
    candidates += [found] if (found := shutil.which("python3.12")) else []
    for candidate in reversed(candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 12)":
            return candidate
    return None


def runtime_path(tmp_path: Path, package: BuildResult) -> tuple[str, list[str]]:
    """The interpreter and the sys.path a run gets: the unpacked zip and the runtime's boto3."""
    python = find_python312()
    if python is None or platform.machine() != "x86_64":
        print("note: no python3.12 for x86_64 here: the handler runs from lambda_src with this Python")
        return sys.executable, [str(ROOT / "lambda_src")]
    task = tmp_path / "task"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(task)
    runtime = tmp_path / "runtime"  # what the Lambda runtime brings: boto3 and its pure-Python dependencies
    runtime.mkdir()
    site = Path(boto3.__file__).resolve().parents[1]
    for name in RUNTIME_PACKAGES:
        if (site / name).exists():
            (runtime / name).symlink_to(site / name)
    return python, [str(task), str(runtime)]


def invoke(python: str, path: list[str], event: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    command = [python, "-I", "-c", RUN, ":".join(path), json.dumps(event)]
    if python != sys.executable:
        command.insert(2, "-S")  # no site-packages of that interpreter: only the zip and boto3
    completed = subprocess.run(command, env=environ, capture_output=True, text=True, check=False, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_synthesized_objects_environment_and_input_migrate_a_real_database(
    synth: Synth, package: BuildResult, aws: Aws, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    stack = synth.stack
    bucket = aws.bucket("replayed-migrations")
    for item in resources(stack, "aws_s3_object").values():
        aws.s3.put_object(Bucket=bucket, Key=item["key"], Body=(synth.stack_dir / item["source"]).read_bytes())
    secret = aws.secretsmanager.create_secret(
        Name="rds!db-replayed", SecretString=json.dumps({"username": pg.user, "password": pg.password})
    )

    _, function = only(stack, "aws_lambda_function")
    decided_at_apply = {
        "MIGRATIONS_BUCKET": bucket,
        "DB_SECRET_ARN": secret["ARN"],
        "DB_HOST": pg.host,
        "DB_PORT": str(pg.port),
    }
    variables = dict(function["environment"]["variables"])
    assert {name for name, value in variables.items() if "${" in value} <= set(decided_at_apply)
    environ = {**os.environ, **variables, **decided_at_apply}
    environ.pop("DATABASE_URL", None)

    python, path = runtime_path(tmp_path, package)
    print(f"replay: {python} with sys.path {[Path(entry).name for entry in path]}")
    _, invocation = only(stack, "aws_lambda_invocation")
    payload = json.loads(invocation["input"])

    created = invoke(python, path, {**payload, "tf": {"action": "create", "prev_input": None}}, environ)
    applied = {database["name"]: database["applied"] for database in created["databases"]}
    assert applied == {"postgres": [1], "app": [1, 20240102090000]}
    assert tables(pg, "app") == ["users"]

    again = invoke(python, path, {**payload, "tf": {"action": "update", "prev_input": payload}}, environ)
    assert [database["applied"] for database in again["databases"]] == [[], []]
    deleted = invoke(python, path, {**payload, "tf": {"action": "delete", "prev_input": payload}}, environ)
    assert "databases" not in deleted or all(not database["applied"] for database in deleted["databases"])
