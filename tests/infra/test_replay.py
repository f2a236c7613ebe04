"""Replay the synthesized stack locally: its objects into moto S3, its function from the built
zip under the runtime's Python with its synthesized environment, its invocation input in the
CRUD envelope, against a real PostgreSQL (the local deploy of ``make demo``, on the tests' stack).

Only what AWS decides at apply time is stood in for (the bucket's generated name, the
secret's ARN, the database endpoint); everything else comes from the synthesized JSON.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.aws import LocalAws
from local.deploy import LocalDeploy
from local.postgres import EmbeddedPostgres
from local.stack import SynthesizedStack
from tests.helpers import tables

from .conftest import Synth


@pytest.fixture
def replay(synth: Synth, pg: EmbeddedPostgres, moto_server: LocalAws) -> Iterator[LocalDeploy]:
    stack = SynthesizedStack(synth.stack_dir / "cdk.tf.json")
    deploy = LocalDeploy(stack, pg, moto_server.reset(stack.region()))
    deploy.provision()
    yield deploy
    print(deploy.note or "the synthesized zip ran under python3.12")
    deploy.close()


def test_synthesized_objects_environment_and_input_migrate_a_real_database(
    replay: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    created = replay.apply()["result"]
    assert {database["name"]: database["applied"] for database in created["databases"]} == {
        "postgres": [1],
        "app": [1, 20240102090000],
    }
    assert tables(pg, "app") == ["users"]

    again = replay.apply()["result"]
    assert [database["applied"] for database in again["databases"]] == [[], []]

    deleted = replay.destroy()
    assert deleted["skipped"] == "terraform destroy: migrations are never undone"
    assert tables(pg, "app") == ["users"]
