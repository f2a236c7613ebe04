"""The infra tests synthesize the stack once per session (two variants) and read the JSON.

The default stack (a new VPC and database, deploy-time run on every apply) uses the
configuration ``main.py`` would read, with a migrations folder of the tests' own; the
bring-your-own variant runs the construct on an existing VPC and database, in the
content-hash run mode; the fleet variant has two servers migrated by a state machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfig
from infra.packaging import BuildResult, build_package
from infra.stack import synthesize
from main import load_config
from tests.helpers import write_files

ROOT = Path(__file__).resolve().parents[2]

MIGRATIONS = {
    "postgres/0001_create_app.up.sql": "CREATE DATABASE app;\n",
    "app/0001_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    "app/0001_users.down.sql": "DROP TABLE users;\n",
    "app/20240102090000_index_users.up.sql": "CREATE INDEX CONCURRENTLY users_id ON users (id);\n",
    "app/README.md": "not a migration: never uploaded\n",
}
BYO: dict[str, Any] = {
    "existing_vpc_id": "vpc-0123456789abcdef0",
    "existing_subnet_ids": ("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"),
    "existing_db_host": "shop.cluster-abc.eu-west-1.rds.amazonaws.com",
    "existing_db_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234-AbCdEf",
    "existing_db_security_group_id": "sg-0cccccccccccccccc",
    "existing_db_secret_kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    "run_mode": "on-change",
    "deploy_principal": "AROA3XFRBF535EXAMPLE",
}

FLEET: dict[str, Any] = {"fleet_servers": ("eu", "us"), "fleet_canary": 1, "fleet_tolerated_failures": 0}


@dataclass(frozen=True)
class Synth:
    """One synthesized stack: its JSON, the folder it was written to, and how long it took."""

    stack: dict[str, Any]
    stack_dir: Path
    seconds: float


@pytest.fixture(scope="session")
def migrations_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_files(tmp_path_factory.mktemp("migrations"), MIGRATIONS)


@pytest.fixture(scope="session")
def package() -> BuildResult:
    return build_package()


@pytest.fixture(scope="session")
def stack_config(migrations_folder: Path) -> StackConfig:
    return load_config({"DBMIGRATE_MIGRATIONS_DIR": str(migrations_folder)})


@pytest.fixture(scope="session")
def synths(
    stack_config: StackConfig, package: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Synth]]:
    results = {}
    variants = (
        ("default", stack_config),
        ("byo", replace(stack_config, **BYO)),
        ("fleet", replace(stack_config, **FLEET)),
    )
    for variant, config in variants:
        outdir = tmp_path_factory.mktemp(f"synth-{variant}")
        started = time.monotonic()
        stack_file = synthesize(config, package=package, outdir=outdir)
        seconds = time.monotonic() - started
        results[variant] = Synth(json.loads(stack_file.read_text(encoding="utf-8")), stack_file.parent, seconds)
    yield results


SynthesizeWith = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def synthesize_with(
    stack_config: StackConfig, package: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> SynthesizeWith:
    """Synthesize the default stack with some settings changed; returns its JSON."""

    def run(**settings: Any) -> dict[str, Any]:
        outdir = tmp_path_factory.mktemp("synth-with")
        stack_file = synthesize(replace(stack_config, **settings), package=package, outdir=outdir)
        found: dict[str, Any] = json.loads(stack_file.read_text(encoding="utf-8"))
        return found

    return run


@pytest.fixture(scope="session")
def synth(synths: dict[str, Synth]) -> Synth:
    return synths["default"]


@pytest.fixture(scope="session")
def stack(synth: Synth) -> dict[str, Any]:
    return synth.stack


@pytest.fixture(scope="session")
def byo_stack(synths: dict[str, Synth]) -> dict[str, Any]:
    return synths["byo"].stack


@pytest.fixture(scope="session")
def fleet_example_synth(synths: dict[str, Synth]) -> Synth:
    return synths["fleet"]


@pytest.fixture(scope="session")
def fleet_example(fleet_example_synth: Synth) -> dict[str, Any]:
    return fleet_example_synth.stack
