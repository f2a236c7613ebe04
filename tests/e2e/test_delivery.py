"""S3 -> SNS -> Lambda as AWS delivers it: the deploy never races its own uploads.

Every put makes an event carrying its principal; the function skips the deploying
principal's (the deploy-time invocation applies them) and runs everyone else's at once.
Each test runs with no reserved concurrency and with a reservation of one, where the
deploy's own (skipped) events take the only slot for a moment and throttle the invoke.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from events import DEPLOYED_SKIP
from local.deploy import LocalDeploy
from local.function import FunctionError
from local.postgres import EmbeddedPostgres
from local.s3_events import OPERATOR, Principal
from tests.helpers import history

RESERVATIONS = pytest.mark.parametrize("reserved", [None, 1], indirect=True, ids=["unreserved", "reserved-1"])
NEW_KEY = "projectdb/202601010000_add_widget_notes.up.sql"
BROKEN = b"ALTER TABLE widgets ADD COLUMN notes text;\nALTER TABLE nowhere ADD x int;\n"


def add_to_the_stack(deploy: LocalDeploy, folder: Path, files: dict[str, bytes]) -> None:
    """New migration files in the synthesized stack, as the next synth of a changed folder has them."""
    objects = deploy.stack.document["resource"]["aws_s3_object"]
    template = next(item for item in objects.values() if item["key"].endswith(".sql"))  # a file's, not the bundle's
    for key, body in files.items():
        source = folder / key.replace("/", "--")
        source.write_bytes(body)
        objects[f"added-{key.replace('/', '-')}"] = {
            **template,
            "key": f"migrations/{key}",
            "source": str(source),
            "source_hash": hashlib.sha256(body).hexdigest(),
        }


def deployed_once(deploy: LocalDeploy) -> int:
    """Apply the example and let its events finish; the number of invocations so far."""
    deploy.apply()
    deploy.settle()
    return len(deploy.service.invocations)


@RESERVATIONS
def test_a_deploy_with_new_files_makes_exactly_one_run_that_applies_them(
    deployed: LocalDeploy, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    deployed_once(deployed)
    objects = len([item for item in deployed.stack.resources("aws_s3_object") if item.args["key"].endswith(".sql")])
    first = deployed.service.invocations
    assert [item.kind for item in first if item.did_work] == ["sync"]
    assert len([item for item in first if item.kind == "async"]) == objects  # one event per put, each skipped

    new = {f"projectdb/2026010100{n:02d}_step_{n}.up.sql": f"CREATE TABLE step_{n} ();\n".encode() for n in range(3)}
    add_to_the_stack(deployed, tmp_path, new)
    before = len(deployed.service.invocations)
    second = deployed.apply()
    deployed.settle()
    runs = deployed.service.invocations[before:]
    assert [d["applied"] for d in second["result"]["databases"]] == [[], [202601010000, 202601010001, 202601010002]]
    assert [item.kind for item in runs if item.did_work] == ["sync"]
    skipped = [item for item in runs if item.kind == "async"]
    assert len(skipped) == len(new)  # Terraform puts only the new objects: one event each, skipped
    assert {item.result["skipped"] for item in skipped} == {DEPLOYED_SKIP}
    assert deployed.service.dead_letters() == []


@RESERVATIONS
def test_a_deploy_with_a_failing_file_fails_the_apply_once_and_dead_letters_nothing(
    deployed: LocalDeploy, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    before = deployed_once(deployed)
    add_to_the_stack(deployed, tmp_path, {NEW_KEY: BROKEN})
    with pytest.raises(FunctionError) as caught:
        deployed.apply()
    deployed.settle()
    assert caught.value.error_type == "SqlError"
    assert f"{NEW_KEY}:2" in caught.value.message
    runs = deployed.service.invocations[before:]
    assert [(item.kind, item.error is not None) for item in runs if item.did_work] == [("sync", True)]
    assert deployed.service.dead_letters() == []
    assert history(pg, "projectdb")[-1][0] != 202601010000


@RESERVATIONS
def test_an_out_of_band_upload_runs_at_once(deployed: LocalDeploy, pg: EmbeddedPostgres) -> None:
    deployed_once(deployed)
    delivered = deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n")
    assert [(item.kind, item.attempt) for item in delivered.attempts] == [("async", 1)]
    assert [d["applied"] for d in delivered.result["databases"]] == [[], [202601010000]]
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")


def test_a_failing_out_of_band_upload_lands_in_the_dead_letter_queue_after_two_retries(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    deployed_once(deployed)
    delivered = deployed.upload(NEW_KEY, BROKEN)
    assert [item.attempt for item in delivered.attempts] == [1, 2, 3]
    assert {item.error.error_type for item in delivered.attempts if item.error} == {"SqlError"}
    (letter,) = deployed.service.dead_letters()
    assert letter["RequestID"] == delivered.put.deliveries[0]
    assert f"{NEW_KEY}:2" in letter["ErrorMessage"]
    (record,) = json.loads(letter["event"]["Records"][0]["Sns"]["Message"])["Records"]
    assert record["s3"]["object"]["key"] == f"migrations/{NEW_KEY}"
    assert record["userIdentity"] == {"principalId": OPERATOR.principal_id}
    assert record["requestParameters"] == {"sourceIPAddress": OPERATOR.source_ip}
    assert history(pg, "projectdb")[-1][0] != 202601010000


def test_a_file_the_deploying_principal_uploads_by_hand_waits_for_the_next_deploy(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    deployed_once(deployed)
    delivered = deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n", principal=deployed.deployer)
    assert delivered.result["skipped"] == DEPLOYED_SKIP
    assert history(pg, "projectdb")[-1][0] != 202601010000
    again = deployed.apply()
    assert [d["applied"] for d in again["result"]["databases"]] == [[], [202601010000]]


def test_another_session_of_the_deploying_role_is_not_the_deploy(deployed: LocalDeploy, pg: EmbeddedPostgres) -> None:
    deployed_once(deployed)
    role_id = deployed.deployer.user_id.split(":")[0]
    delivered = deployed.upload(NEW_KEY, b"SELECT 1;\n", principal=Principal(f"{role_id}:alice@example.com"))
    assert [d["applied"] for d in delivered.result["databases"]] == [[], [202601010000]]
