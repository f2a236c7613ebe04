"""The main job end to end: the synthesized stack played on PostgreSQL, moto and the packaged function.

Every assertion is on the database's real schema and history, not on printed text
(except the one test of the main job's own output).
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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

    deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n")
    assert "notes" in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")

    before = query(pg, "projectdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1")
    again = deployed.apply()
    assert [d["applied"] for d in again["result"]["databases"]] == [[], []]
    assert query(pg, "projectdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1") == before


def test_a_broken_upload_fails_its_run_naming_the_file_and_the_fixed_upload_applies(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    deployed.apply()
    with pytest.raises(FunctionError) as caught:
        deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\nALTER TABLE nowhere ADD x int;\n")
    assert caught.value.error_type == "SqlError"
    assert f"{NEW_KEY}:2" in caught.value.message and 'relation "nowhere" does not exist' in caught.value.message
    assert "notes" not in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1][0] == EXAMPLE_VERSIONS[-1]

    deployed.upload(NEW_KEY, b"ALTER TABLE widgets ADD COLUMN notes text;\n")
    assert "notes" in columns(pg, "widgets")
    assert history(pg, "projectdb")[-1] == (202601010000, "applied")


def test_deploy_time_run_and_an_upload_run_at_the_same_moment_apply_every_file_once(
    deployed: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    slow_first = b"CREATE TABLE upload_log (version bigint);\nSELECT pg_sleep(1);\n"
    deployed.apply(upload=True)  # the example, so both runs below race on the new files only
    deployed.aws.s3.put_object(
        Bucket=deployed.bucket, Key="migrations/projectdb/202601010000_log.up.sql", Body=slow_first
    )
    second = deployed.another_function()
    try:
        with ThreadPoolExecutor(2) as pool:
            deploy_run = pool.submit(deployed.apply, upload=False)
            upload_run = pool.submit(
                deployed.upload,
                "projectdb/202601010100_more.up.sql",
                b"INSERT INTO upload_log VALUES (202601010100);\n",
                function=second,
            )
            results = [deploy_run.result(timeout=120), {"result": upload_run.result(timeout=120)}]
    finally:
        second.close()
    applied = [v for r in results for d in r["result"]["databases"] for v in d["applied"]]
    assert sorted(applied) == [202601010000, 202601010100]
    assert query(pg, "projectdb", "SELECT count(*) FROM upload_log") == [(1,)]
    assert [v for v, _ in history(pg, "projectdb")][-2:] == [202601010000, 202601010100]
    assert any(r["result"].get("lock_waited_s", 0) > 0.1 for r in results)


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
        "deploy again: nothing is re-applied",
    ):
        assert line in printed
