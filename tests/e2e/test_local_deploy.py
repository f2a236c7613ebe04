"""The main job end to end: the synthesized stack played on PostgreSQL, moto and the packaged function.

Every assertion is on the database's real schema and history, not on printed text
(except the one test of the main job's own output).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dbmigrate import bundle, s3source
from local.aws import LocalAws
from local.demo import run
from local.deploy import LocalDeploy
from local.function import FunctionError
from local.postgres import EmbeddedPostgres
from local.stack import SynthesizedStack
from tests.helpers import history, query, tables

EXAMPLE = Path(__file__).resolve().parents[2] / "migrations"
EXAMPLE_VERSIONS = sorted(int(p.name.split("_", 1)[0]) for p in (EXAMPLE / "projectdb").glob("*.up.sql"))
NEW_KEY = "projectdb/202601010000_add_widget_notes.up.sql"


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def columns(pg: EmbeddedPostgres, table: str) -> list[str]:
    rows = query(pg, "projectdb", "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
    return sorted(name for (name,) in rows)


def test_deploy_applies_the_example_then_an_upload_applies_its_file_and_a_redeploy_applies_nothing(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    first = deployed.apply()
    assert first["uploaded"] == len(deployed.stack.resources("aws_s3_object"))
    assert [(d["name"], d["applied"]) for d in first["result"]["databases"]] == [
        ("postgres", [202401010000]),
        ("projectdb", EXAMPLE_VERSIONS),
    ]
    assert {"users", "widgets"} <= set(tables(pg, "projectdb"))
    assert [v for v, status in history(pg, "projectdb") if status == "applied"] == EXAMPLE_VERSIONS
    applied_as = query(pg, "projectdb", "SELECT DISTINCT db_user, applied_by FROM dbmigrate.history")
    assert applied_as == [("dbadmin", "lambda:dbmigrate-migrate")]

    run = deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n").result
    assert [d["applied"] for d in run["databases"]] == [[], [202601010000]]
    assert "notes" in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")

    before = query(pg, "projectdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1")
    again = deployed.apply()
    # As Terraform: unchanged objects are not put again; the timestamp trigger replaces the run.
    assert (again["uploaded"], again["invokes"]) == (0, ["delete", "create"])
    assert [d["applied"] for d in again["result"]["databases"]] == [[], []]
    assert query(pg, "projectdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1") == before


def test_a_broken_upload_fails_its_run_naming_the_file_and_the_fixed_upload_applies(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    deployed.apply()
    broken = deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\nALTER TABLE nowhere ADD x int;\n")
    assert broken.failed
    error = broken.attempts[-1].error
    assert error is not None and error.error_type == "SqlError"
    assert f"{NEW_KEY}:2" in error.message and 'relation "nowhere" does not exist' in error.message
    assert "notes" not in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1][0] == EXAMPLE_VERSIONS[-1]

    assert not deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n").failed
    assert "notes" in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")


@pytest.mark.parametrize("reserved", [None, 1], indirect=True, ids=["unreserved", "reserved-1"])
def test_deploy_time_run_and_an_upload_run_at_the_same_moment_apply_every_file_once(
    deployed: LocalDeploy, pg: EmbeddedPostgres, reserved: int | None
) -> None:
    deployed.apply()  # the example, so both runs below race on the new file only
    deployed.settle()
    throttled_before = deployed.service.throttled
    slow = b"CREATE TABLE upload_log (version bigint);\nSELECT pg_sleep(1);\nINSERT INTO upload_log VALUES (1);\n"
    with ThreadPoolExecutor(1) as pool:
        upload_run = pool.submit(deployed.upload, "projectdb/202601010000_log.up.sql", slow)
        wait_until(lambda: deployed.service.busy > 0)  # the upload's run holds a slot (it settles 0.3 s, then applies)
        deploy = deployed.apply(upload=False)
        uploaded = upload_run.result(timeout=120)
    results = [deploy["result"], uploaded.result]
    assert sorted(v for r in results for d in r["databases"] for v in d["applied"]) == [202601010000]
    assert query(pg, "projectdb", "SELECT count(*) FROM upload_log") == [(1,)]
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")
    if reserved is None:  # both ran at once: the advisory lock kept them apart
        assert any(r.get("lock_waited_s", 0) > 0.1 for r in results)
    else:  # one slot: the deploy's invoke was throttled while the upload's run held it, and retried
        assert deploy["invokes"] == ["delete", "create"]  # a timestamp trigger replaces the invocation
        assert deploy["attempts"] > len(deploy["invokes"])
        assert deployed.service.throttled - throttled_before == deploy["attempts"] - len(deploy["invokes"])


def test_postgres_stopped_mid_deploy_fails_naming_host_and_port_and_a_rerun_completes(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    pg.stop()
    try:
        started = time.monotonic()
        with pytest.raises(FunctionError) as caught:
            deployed.apply()
        assert time.monotonic() - started < 5 + 5  # the connect timeout, and the function's start
        assert caught.value.error_type == "DatabaseConnectError"
        assert f"{pg.host}:{pg.port}/postgres" in caught.value.message
    finally:
        pg.start()
    result = deployed.apply()
    assert [d["applied"] for d in result["result"]["databases"]][1] == EXAMPLE_VERSIONS


@pytest.mark.parametrize(
    ("payload", "error_type", "message"),
    [
        ("this is not JSON", "Runtime.UnmarshalError", "Unable to unmarshal input"),
        ('{"action": "explode"}', "ConfigError", "unknown action 'explode'"),
        ('["migrate"]', "ConfigError", "the event must be a JSON object"),
    ],
)
def test_a_payload_that_is_not_json_or_has_an_unknown_action_is_refused_clearly(
    deployed: LocalDeploy, pg: EmbeddedPostgres, payload: str, error_type: str, message: str
) -> None:
    function = deployed.another_function()
    try:
        with pytest.raises(FunctionError) as caught:
            function.invoke_raw(payload)
    finally:
        function.close()
    assert caught.value.error_type == error_type
    assert message in caught.value.message
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'projectdb'") == [(0,)]


def test_the_main_job_prints_each_step_and_succeeds(stack_file: Path, local_aws: LocalAws) -> None:
    out = io.StringIO()
    assert run(stack_file.parents[2], out, stack=SynthesizedStack(stack_file)) == 0
    printed = out.getvalue()
    for line in (
        "deploy: objects uploaded, deploy-time invocation ran",
        "the S3 event's run",
        "deploy again: no object changed (none put); the replaced run applies nothing",
    ):
        assert line in printed
    fleet = printed[printed.index("step 1: every tenant's first file") :].splitlines()
    rows = [line.split() for line in fleet if line.startswith("    ") and not line.strip().startswith("TARGET")]
    steps = [rows[0:4], rows[4:8], rows[8:12]]  # three targets and the execution's line, per step
    assert [row[:3] for row in steps[0][:3]] == [
        ["eu", "canary", "succeeded"],
        ["us", "wave_1", "succeeded"],
        ["ap", "wave_1", "succeeded"],
    ]
    assert steps[0][1][3:7] == ["11", "file(s)", "on", "11"], "the root and ten tenants"
    assert [row[2] for row in steps[1][:3]] == ["succeeded", "succeeded", "failed"]
    assert "tenant_17" in steps[1][2] and steps[1][2][3] == "9", "the other nine tenants of ap applied it"
    assert steps[1][3][:4] == ["execution", "succeeded:", "1", "failed,"]
    assert [row[3] for row in steps[2][:3]] == ["-", "-", "1"], "the rerun: only tenant_17's file"
    status = printed[printed.index("dbmigrate fleet status") :]
    assert re.search(r"tenant_17\s+202402020000\s+2\s+0", status), "a table per target, tenant_17 caught up"
    assert "3 target(s): 3 up to date, 0 pending, 0 with problems" in status


def gathered(deploy: LocalDeploy, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """What a run reading every file takes from the deployed bundle, and what each file's own object holds."""
    monkeypatch.setattr(s3source, "GATHER_MIN", 1)
    client, own_reads = deploy.aws.client("s3"), []
    client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: own_reads.append(params["Key"])
    )
    source = s3source.S3Source(deploy.bucket, "migrations/", client, bodies=s3source.BodyCache())
    keys = [key for ref in source.list() for key in (ref.key, ref.down_key) if key]
    source.gather(keys)
    own_reads.clear()
    bodies = {key: source.read(key) for key in keys}
    taken = {key: body for key, body in bodies.items() if f"migrations/{key}" not in own_reads}
    objects = {
        key: deploy.aws.s3.get_object(Bucket=deploy.bucket, Key=f"migrations/{key}")["Body"].read() for key in keys
    }
    assert bodies == objects
    return taken, objects


def test_the_deployed_bundle_holds_each_object_as_uploaded_and_drops_one_written_out_of_band(
    deployed: LocalDeploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed.apply()
    taken, objects = gathered(deployed, monkeypatch)
    assert taken == objects
    assert len(objects) == len(list(EXAMPLE.glob("*/*.sql")))

    changed = "projectdb/202401050800_widget_counts.up.sql"
    deployed.upload(changed, b"SELECT 1;\n")  # out of band, without a checksum; its run refuses the drift
    with pytest.raises(FunctionError, match="ChecksumMismatchError"):  # the drift fails the run
        deployed.apply()  # after Terraform's refresh read the object's new ETag, and its checksum: none
    key, s3 = f"migrations/{changed}", deployed.aws.s3
    index = s3.get_object(Bucket=deployed.bucket, Key=f"migrations/{bundle.INDEX_KEY}")["Body"].read().decode()
    (line,) = [entry for entry in map(json.loads, index.splitlines()) if entry.get("file") == changed]
    assert (line["etag"], line["sha256"]) == (s3.head_object(Bucket=deployed.bucket, Key=key)["ETag"].strip('"'), "")
    taken, objects = gathered(deployed, monkeypatch)
    assert objects[changed] == b"SELECT 1;\n"
    assert set(taken) == set(objects) - {changed}
    assert all(taken[key] == objects[key] for key in taken)
