"""The migration Lambda's handler end to end: real events, moto S3 and Secrets Manager, a real PostgreSQL.

Nothing of the engine is replaced: the handler lists and reads the bucket on moto over
HTTP and applies the files to the test server.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest

import aws_clients
from aws_clients import new_client
from dbmigrate.cli import main as cli_main
from dbmigrate.cli_remote import remote_plan
from dbmigrate.errors import ConfigError, DeadlineError, MigrationError, SourceError, SqlError
from dbmigrate.lock import lock_key
from dbmigrate.sources import LocalSource
from environment import VARIABLES
from events import DEPLOYED_SKIP
from handler import handler
from infra.fleet_definition import FleetTarget, Rollout, Tolerance, fleet_definition
from infra.fleet_definition import TenantGroup as FleetTenantGroup
from jsonlog import JsonFormatter
from local.aws import LocalAws
from local.lambda_runtime import Context
from local.postgres import EmbeddedPostgres
from local.stepfunctions import LocalStepFunctions
from tests.conftest import reset_cluster
from tests.helpers import history, query, tables, write_files

pytestmark = pytest.mark.any_pg_version(
    "events, actions, secrets and the fleet on moto; the SQL it applies is plain (the engine's is every_pg_version)"
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
BUCKET = "acme-dbmigrate-migrations"  # the bucket of the event fixtures
PREFIX = "migrations/"
NEW_FILE = "projectdb/202401020900_add_widgets.up.sql"  # the key of s3_put.json and sns_s3_put.json
BASE = {
    "postgres/202401010000_create_projectdb.up.sql": "CREATE DATABASE projectdb;\n",
    "projectdb/202401010100_create_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n",
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@dataclass
class Function:
    """The deployed function as a test sees it: its bucket, its environment, and a way to invoke it."""

    aws: LocalAws
    pg: EmbeddedPostgres
    monkeypatch: pytest.MonkeyPatch
    caplog: pytest.LogCaptureFixture

    def upload(self, files: dict[str, str]) -> None:
        self.aws.upload(BUCKET, files, PREFIX)

    def setenv(self, **variables: str) -> None:
        for name, value in variables.items():
            self.monkeypatch.setenv(name, value)

    def invoke(self, payload: dict[str, Any] | str, context: Context | None = None) -> dict[str, Any]:
        return handler(event(payload) if isinstance(payload, str) else payload, context or Context())

    def log_lines(self) -> list[str]:
        """Every record logged so far, as the function's JSON log lines."""
        formatter = JsonFormatter()
        return [formatter.format(record) for record in self.caplog.records if record.name != "werkzeug"]


@pytest.fixture
def function(
    aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[Function]:
    """The function's environment as the stack sets it (credentials as DATABASE_URL), and its bucket."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    aws.bucket(BUCKET)
    deployed = Function(aws, pg, monkeypatch, caplog)
    deployed.setenv(
        MIGRATIONS_BUCKET=BUCKET,
        MIGRATIONS_PREFIX="migrations",
        DATABASE_URL=pg.url(),
        LOG_LEVEL="INFO",
        UPLOAD_SETTLE_S="0.2",
    )
    deployed.upload(BASE)
    caplog.set_level(logging.INFO)
    root, levels = logging.getLogger(), {name: logging.getLogger(name).level for name in ("botocore", "urllib3")}
    root_level = root.level
    yield deployed
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {database["name"]: database for database in result["databases"]}


# -- direct payloads and the aws_lambda_invocation envelope ------------------------------------


def test_terraform_create_applies_every_pending_file_and_reports_it(function: Function, pg: EmbeddedPostgres) -> None:
    result = function.invoke("terraform_create.json")
    databases = by_name(result)
    assert result["action"] == "migrate"
    assert list(databases) == ["postgres", "projectdb"]
    assert databases["postgres"]["applied"] == [202401010000]
    assert databases["projectdb"]["applied"] == [202401010100]
    assert databases["projectdb"]["pending"] == []
    assert isinstance(databases["projectdb"]["duration_ms"], int)
    assert tables(pg, "projectdb") == ["users"]
    json.dumps(result)  # the invocation's result must be JSON


def test_a_repeated_terraform_run_applies_nothing(function: Function) -> None:
    function.invoke("terraform_create.json")
    result = function.invoke("terraform_update.json")
    assert [database["applied"] for database in result["databases"]] == [[], []]


def test_terraform_delete_succeeds_without_touching_s3_or_the_database(
    function: Function, refusing_endpoint: str
) -> None:
    function.setenv(
        AWS_ENDPOINT_URL=refusing_endpoint, DATABASE_URL=refusing_endpoint.replace("http", "postgresql") + "/{database}"
    )
    result = function.invoke("terraform_delete.json")
    assert result == {
        "action": None,
        "trigger": "terraform:delete",
        "skipped": "terraform destroy: migrations are never undone",
        "databases": [],
    }


def test_the_deploys_own_upload_is_skipped_without_touching_s3_or_the_database(
    function: Function, refusing_endpoint: str
) -> None:
    function.setenv(
        DEPLOY_PRINCIPAL="AROA3XFRBF535EXAMPLE:GitHubActions",
        AWS_ENDPOINT_URL=refusing_endpoint,
        DATABASE_URL=refusing_endpoint.replace("http", "postgresql") + "/{database}",
    )
    result = function.invoke("sns_s3_put_by_deploy_role.json")
    assert result == {"action": None, "trigger": "sns", "skipped": DEPLOYED_SKIP, "databases": []}
    assert any("skipping an object the deploy uploaded" in line for line in function.log_lines())


def test_plan_lists_pending_versions_and_applies_nothing(function: Function, pg: EmbeddedPostgres) -> None:
    result = function.invoke("invoke_plan.json")
    assert result["action"] == "plan"
    assert by_name(result)["projectdb"]["pending"] == [202401010100]
    assert query(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'projectdb'") == []


def test_status_reports_only_the_databases_asked_for(function: Function) -> None:
    function.invoke("invoke_migrate.json")
    result = function.invoke("invoke_status_projectdb.json")
    assert result["action"] == "status"
    assert [(d["name"], d["applied"], d["pending"]) for d in result["databases"]] == [("projectdb", [202401010100], [])]


def test_down_asked_for_directly_undoes_newer_versions_with_their_down_files(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.upload(
        {
            "projectdb/202401020900_add_widgets.up.sql": "CREATE TABLE widgets (id int);\n",
            "projectdb/202401020900_add_widgets.down.sql": "DROP TABLE widgets;\n",
        }
    )
    function.setenv(ALLOW_DOWN="true")
    function.invoke("invoke_migrate.json")
    result = function.invoke("invoke_down_projectdb.json")
    assert result["action"] == "down"
    assert [(d["name"], d["reverted"], d["current_version"]) for d in result["databases"]] == [
        ("projectdb", [202401020900], 202401010100)
    ]
    assert tables(pg, "projectdb") == ["users"]
    assert history(pg, "projectdb") == [(202401010100, "applied")]


def test_an_upload_event_waits_for_the_rest_of_its_batch_before_it_runs(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.setenv(UPLOAD_SETTLE_S="1")
    function.invoke("terraform_create.json")
    first = {"projectdb/202401020900_add_widgets.up.sql": "CREATE TABLE widgets (id int);\n"}
    rest = {"projectdb/202401020800_add_gadgets.up.sql": "CREATE TABLE gadgets (id int);\n"}
    function.upload(first)
    timer = threading.Timer(0.5, function.upload, args=(rest,))  # the batch's other file, still on its way
    timer.start()
    try:
        result = function.invoke("sns_s3_put.json")
    finally:
        timer.join()
    assert by_name(result)["projectdb"]["applied"] == [202401020800, 202401020900]
    assert tables(pg, "projectdb") == ["gadgets", "users", "widgets"]


def test_an_unknown_action_fails_the_invocation(function: Function) -> None:
    with pytest.raises(ConfigError, match="unknown action 'destroy'"):
        function.invoke({"action": "destroy"})


def test_applied_files_record_the_function_that_applied_them(function: Function, pg: EmbeddedPostgres) -> None:
    function.invoke("invoke_migrate.json", Context(function_name="acme-dbmigrate-prod"))
    rows = query(pg, "projectdb", "SELECT applied_by, etag FROM dbmigrate.history")
    assert rows == [
        (
            "lambda:acme-dbmigrate-prod",
            function.aws.s3.head_object(Bucket=BUCKET, Key=PREFIX + "projectdb/202401010100_create_users.up.sql")[
                "ETag"
            ].strip('"'),
        )
    ]


# -- S3 notifications ------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["sns_s3_put.json", "s3_put.json"])
def test_an_uploaded_file_is_applied_by_its_notification(
    function: Function, pg: EmbeddedPostgres, fixture: str
) -> None:
    function.invoke("terraform_create.json")
    function.upload({NEW_FILE: "CREATE TABLE widgets (id bigint PRIMARY KEY);\n"})
    result = function.invoke(fixture)
    assert [(d["name"], d["applied"]) for d in result["databases"]] == [
        ("postgres", []),
        ("projectdb", [202401020900]),
    ]
    assert tables(pg, "projectdb") == ["users", "widgets"]


def test_a_notification_creates_a_new_database_through_the_root_database_first(
    function: Function, pg: EmbeddedPostgres
) -> None:
    # The fixture's records: a CREATE DATABASE in the root folder, and a new database's first file.
    function.upload(
        {
            "postgres/202401020800_create_reportsdb.up.sql": "CREATE DATABASE reportsdb;",
            "reportsdb/202401020810_créer_totaux.up.sql": "CREATE TABLE totaux (jour date PRIMARY KEY);",
            NEW_FILE: "CREATE TABLE widgets (id bigint PRIMARY KEY);",
            "projectdb/202401020900_add_widgets.down.sql": "DROP TABLE widgets;",
            "README.md": "not a migration",
        }
    )
    result = function.invoke("s3_several_records.json")
    assert [(d["name"], d["applied"]) for d in result["databases"]] == [
        ("postgres", [202401010000, 202401020800]),
        ("projectdb", [202401010100, 202401020900]),
        ("reportsdb", [202401020810]),
    ]
    assert tables(pg, "reportsdb") == ["totaux"]
    skipped = [json.loads(line) for line in function.log_lines() if "skipping" in line]
    assert [entry["key"] for entry in skipped] == ["migrations/README.md", "other-team/notes.sql"]


@pytest.mark.parametrize("fixture", ["sns_s3_test_event.json", "s3_test_event.json", "s3_delete.json"])
def test_test_events_and_removals_do_nothing(function: Function, pg: EmbeddedPostgres, fixture: str) -> None:
    result = function.invoke(fixture)
    assert result["action"] is None
    assert result["databases"] == []
    assert query(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'projectdb'") == []


def test_a_notification_from_another_bucket_is_refused(function: Function, pg: EmbeddedPostgres) -> None:
    with pytest.raises(ConfigError, match="'someone-elses-bucket', but this function migrates from bucket"):
        function.invoke("sns_s3_other_bucket.json")
    assert query(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'projectdb'") == []


# -- failures raise -------------------------------------------------------------------------------


def test_a_broken_migration_fails_the_invocation_naming_the_file(function: Function, pg: EmbeddedPostgres) -> None:
    function.invoke("terraform_create.json")
    function.upload({NEW_FILE: "CREATE TABLE widgets (id bigint PRIMARY KEY);\nSELECT * FROM no_such_table;\n"})
    with pytest.raises(SqlError) as caught:
        function.invoke("sns_s3_put.json")
    assert caught.value.database == "projectdb"
    assert caught.value.file == NEW_FILE
    assert f"{NEW_FILE}:2" in str(caught.value)
    assert "no_such_table" in str(caught.value)
    assert tables(pg, "projectdb") == ["users"]
    assert history(pg, "projectdb") == [(202401010100, "applied")]
    failure = [json.loads(line) for line in function.log_lines() if '"level": "ERROR"' in line]
    assert failure[-1]["error"]["file"] == NEW_FILE


def test_a_misnamed_upload_fails_the_invocation_naming_the_key(function: Function) -> None:
    function.upload({"projectdb/add_widgets.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"projectdb/add_widgets\.sql: file name must be"):
        function.invoke("invoke_migrate.json")


def test_a_run_short_of_time_stops_before_the_next_file_and_says_what_is_left(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.setenv(MIN_TIME_LEFT_S="30")
    with pytest.raises(DeadlineError) as caught:
        function.invoke("invoke_migrate.json", Context(timeout_s=12))
    left = re.search(r"stopped before postgres/202401010000_create_projectdb.up.sql: (\d+) s left", str(caught.value))
    assert left and 0 < int(left[1]) <= 12, caught.value  # what is left when it stops, however loaded the machine
    assert caught.value.details["not_started"] == [202401010000]
    assert query(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'projectdb'") == []


@pytest.mark.parametrize("endpoint", ["refusing_endpoint", "unanswering_endpoint"])
def test_unreachable_s3_fails_within_ten_seconds_with_the_gateway_endpoint_hint(
    function: Function, request: pytest.FixtureRequest, endpoint: str
) -> None:
    function.setenv(AWS_ENDPOINT_URL_S3=request.getfixturevalue(endpoint))
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        function.invoke("terraform_create.json")
    assert time.monotonic() - started < 10
    assert "S3 gateway endpoint" in str(caught.value)
    assert "route tables" in str(caught.value)


# -- credentials -------------------------------------------------------------------------------------

ODD_PASSWORD = "p@ss:w/rd?#%&'\" 1"  # RDS-generated passwords use such characters


@pytest.fixture
def migrator(pg: EmbeddedPostgres) -> str:
    """A login role whose password needs quoting in a URL."""
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE migrator LOGIN SUPERUSER PASSWORD %s", (ODD_PASSWORD,))
    conn.close()
    return "migrator"


def put_secret(function: Function, secret: dict[str, Any]) -> str:
    arn: str = function.aws.secretsmanager.create_secret(
        Name="rds!db-3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", SecretString=json.dumps(secret)
    )["ARN"]
    function.monkeypatch.delenv("DATABASE_URL")
    function.setenv(DB_SECRET_ARN=arn)
    return arn


def test_rds_managed_secret_with_host_and_port_from_the_environment(
    function: Function, pg: EmbeddedPostgres, migrator: str
) -> None:
    put_secret(function, {"username": migrator, "password": ODD_PASSWORD})
    function.setenv(DB_HOST=pg.host, DB_PORT=str(pg.port))
    result = function.invoke("invoke_migrate.json")
    assert by_name(result)["projectdb"]["applied"] == [202401010100]
    assert query(pg, "projectdb", "SELECT db_user FROM dbmigrate.history") == [("migrator",)]


def test_secret_with_its_own_host_and_port(function: Function, pg: EmbeddedPostgres, migrator: str) -> None:
    put_secret(
        function,
        {
            "username": migrator,
            "password": ODD_PASSWORD,
            "engine": "postgres",
            "host": pg.host,
            "port": pg.port,
            "dbname": "postgres",
            "dbInstanceIdentifier": "acme-db",
        },
    )
    assert by_name(function.invoke("invoke_migrate.json"))["projectdb"]["applied"] == [202401010100]


def test_a_warm_function_makes_each_client_once_and_a_new_endpoint_gets_its_own(
    function: Function, pg: EmbeddedPostgres, migrator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def counted(service: str) -> Any:
        made.append(service)
        return new_client(service)

    monkeypatch.setattr(aws_clients, "new_client", counted)
    put_secret(function, {"username": migrator, "password": ODD_PASSWORD})
    function.setenv(DB_HOST=pg.host, DB_PORT=str(pg.port))
    assert by_name(function.invoke("invoke_migrate.json"))["projectdb"]["applied"] == [202401010100]
    function.upload({"projectdb/202401030000_more.up.sql": "CREATE TABLE more (id int);\n"})
    assert by_name(function.invoke("invoke_migrate.json"))["projectdb"]["applied"] == [202401030000]
    assert sorted(made) == ["s3", "secretsmanager"]
    function.setenv(AWS_ENDPOINT_URL_S3=function.aws.endpoint + "/")  # the same moto, another spelling
    assert by_name(function.invoke("invoke_migrate.json"))["projectdb"]["applied"] == []
    assert sorted(made) == ["s3", "s3", "secretsmanager", "secretsmanager"]


def watch_s3(monkeypatch: pytest.MonkeyPatch, event: str, seen: Callable[..., str]) -> list[str]:
    """What the function's S3 clients do, from now on: ``seen(**kwargs)`` of each botocore ``event``."""
    calls: list[str] = []

    def watched(service: str) -> Any:
        client = new_client(service)
        if service == "s3":
            client.meta.events.register(event, lambda **kwargs: calls.append(seen(**kwargs)))
        return client

    monkeypatch.setattr(aws_clients, "new_client", watched)
    return calls


def test_a_warm_function_reads_an_unchanged_file_once_and_a_rewritten_one_again(
    function: Function, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = watch_s3(monkeypatch, "before-parameter-build.s3.GetObject", lambda params, **_: params["Key"])
    function.upload({NEW_FILE: "CREATE TABLE widgets (id int REFERENCES nowhere);\n"})
    with pytest.raises(SqlError, match="nowhere"):
        function.invoke("invoke_migrate.json")
    assert sorted(reads) == sorted(PREFIX + key for key in [*BASE, NEW_FILE])

    reads.clear()
    with pytest.raises(SqlError, match="nowhere"):
        function.invoke("invoke_migrate.json")  # Lambda's retry: the same file, unchanged
    assert reads == [], "the warm process read it before"

    function.upload({NEW_FILE: "CREATE TABLE widgets (id int);\n"})  # fixed: another ETag
    result = function.invoke("invoke_migrate.json")

    assert by_name(result)["projectdb"]["applied"] == [202401020900]
    assert reads == [PREFIX + NEW_FILE], "only the rewritten file is read again"
    assert tables(pg, "projectdb") == ["users", "widgets"]


def test_a_secret_without_a_host_asks_for_db_host(function: Function, migrator: str) -> None:
    arn = put_secret(function, {"username": migrator, "password": ODD_PASSWORD})
    with pytest.raises(ConfigError, match=f"no database host: DB_HOST is not set and the secret {arn} has no host"):
        function.invoke("invoke_migrate.json")


def test_a_missing_secret_is_named(function: Function) -> None:
    function.monkeypatch.delenv("DATABASE_URL")
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-gone-AbCdEf"
    function.setenv(DB_SECRET_ARN=arn)
    with pytest.raises(ConfigError, match=f"cannot read the secret {arn}: ResourceNotFoundException"):
        function.invoke("invoke_migrate.json")


def test_unreachable_secrets_manager_fails_fast_with_the_interface_endpoint_hint(
    function: Function, migrator: str, unanswering_endpoint: str
) -> None:
    put_secret(function, {"username": migrator, "password": ODD_PASSWORD})
    function.setenv(AWS_ENDPOINT_URL_SECRETS_MANAGER=unanswering_endpoint, DB_HOST="127.0.0.1")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="Secrets Manager interface endpoint"):
        function.invoke("invoke_migrate.json")
    assert time.monotonic() - started < 10


Scenario = Callable[[Function, EmbeddedPostgres], Any]


def wrong_database_port(function: Function, pg: EmbeddedPostgres) -> None:
    function.setenv(DB_HOST=pg.host, DB_PORT="1", CONNECT_TIMEOUT_S="2")
    function.invoke("invoke_migrate.json")


def broken_file(function: Function, pg: EmbeddedPostgres) -> None:
    function.upload({NEW_FILE: "SELECT current_setting('no.such');"})
    function.invoke("sns_s3_put.json")


def wrong_password(function: Function, pg: EmbeddedPostgres) -> None:
    function.setenv(DB_HOST=pg.host, DB_PORT=str(pg.port))
    function.aws.secretsmanager.put_secret_value(
        SecretId=function.aws.secretsmanager.list_secrets()["SecretList"][0]["ARN"],
        SecretString=json.dumps({"username": "migrator", "password": ODD_PASSWORD + "x"}),
    )
    function.invoke("invoke_migrate.json")


def success(function: Function, pg: EmbeddedPostgres) -> dict[str, Any]:
    function.setenv(DB_HOST=pg.host, DB_PORT=str(pg.port), LOG_LEVEL="DEBUG")
    return function.invoke("terraform_create.json")


@pytest.mark.parametrize("scenario", [success, broken_file, wrong_password, wrong_database_port])
def test_the_password_never_appears_in_logs_results_or_errors(
    function: Function, pg: EmbeddedPostgres, migrator: str, scenario: Scenario
) -> None:
    put_secret(function, {"username": migrator, "password": ODD_PASSWORD})
    function.setenv(DB_HOST=pg.host, DB_PORT=str(pg.port))
    outputs: list[str] = []
    try:
        outputs.append(json.dumps(scenario(function, pg)))
    except MigrationError as exc:
        outputs += [str(exc), repr(exc), json.dumps(exc.to_dict())]
    lines = function.log_lines()
    assert lines, "the run logged nothing"
    for line in lines:
        json.loads(line)  # every line is one JSON object
    for text in [*outputs, *lines]:
        assert ODD_PASSWORD not in text
        assert quote(ODD_PASSWORD, safe="") not in text
        assert pg.password not in text


def test_the_connection_url_never_appears_in_logs_or_results(function: Function, pg: EmbeddedPostgres) -> None:
    function.setenv(LOG_LEVEL="DEBUG")
    result = function.invoke("terraform_create.json")
    for text in [json.dumps(result), *function.log_lines()]:
        assert pg.password not in text
        assert pg.url() not in text


def test_progress_is_logged_as_one_json_object_per_file(function: Function) -> None:
    function.invoke("terraform_create.json")
    entries = [json.loads(line) for line in function.log_lines()]
    done = [entry["progress"] for entry in entries if entry["message"] == "file_done"]
    assert [(d["database"], d["version"]) for d in done] == [("postgres", 202401010000), ("projectdb", 202401010100)]
    requested = next(entry for entry in entries if entry["message"] == "run requested")
    assert (requested["action"], requested["trigger"]) == ("migrate", "terraform:create")
    finished = next(entry for entry in entries if entry["message"] == "run finished")
    assert finished["result"]["action"] == "migrate"


# -- the remote plan: the caller's manifest against the databases' history ----------------------


def remote(function: Function, folder: Path, files: dict[str, str]) -> dict[str, Any]:
    """``dbmigrate plan --function`` on ``files``, its invoke going straight to the handler."""
    return remote_plan(LocalSource(write_files(folder, files)), function.invoke)


def test_remote_plan_lists_what_would_be_applied_before_anything_is_uploaded(
    function: Function, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    function.invoke("invoke_migrate.json")
    new = {"projectdb/202401020900_add_widgets.up.sql": "CREATE TABLE widgets (id int);\n"}
    result = remote(function, tmp_path, {**BASE, **new})
    assert result["action"] == "plan" and result["problems"] == []
    assert by_name(result)["projectdb"]["pending"] == [202401020900]
    [pending] = by_name(result)["projectdb"]["pending_files"]
    assert pending["mode"] == "transaction", "read by the CLI: the function saw the checksum only"
    assert "widgets" not in tables(pg, "projectdb")
    listed = function.aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]
    assert not any(item["Key"].endswith("add_widgets.up.sql") for item in listed)


def test_remote_plan_reports_drift_changed_missing_and_out_of_order(
    function: Function, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    function.upload({"projectdb/202401010200_more.up.sql": "CREATE TABLE more ();\n"})
    function.invoke("invoke_migrate.json")
    local = {
        "postgres/202401010000_create_projectdb.up.sql": BASE["postgres/202401010000_create_projectdb.up.sql"],
        "projectdb/202401010100_create_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);\n",  # edited
        "projectdb/202401010150_late.up.sql": "CREATE TABLE late ();\n",  # older than the newest applied
    }  # and 202401010200_more is gone from the local folder
    projectdb = by_name(result := remote(function, tmp_path, local))["projectdb"]
    assert projectdb["changed"] == [202401010100]
    assert projectdb["missing"] == [202401010200]
    assert projectdb["out_of_order"] == [202401010150]
    assert [problem["error"] for problem in result["problems"]] == ["ChecksumMismatchError"]


def test_remote_plan_from_the_command_line_exits_1_on_drift(
    function: Function, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    function.invoke("invoke_migrate.json")
    invoked: list[str] = []

    def invoker(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        invoked.append(name)
        return lambda payload: function.invoke(json.loads(json.dumps(payload)))

    monkeypatch.setattr("dbmigrate.cli_remote.lambda_invoker", invoker)  # cli imports it when plan --function runs
    remote(function, tmp_path, BASE)
    assert cli_main(["plan", "--function", "acme-dbmigrate", "--dir", str(tmp_path)]) == 0
    assert "projectdb: 0 pending (current 202401010100)" in capsys.readouterr().out
    (tmp_path / "projectdb/202401010100_create_users.up.sql").write_text("-- edited\n")
    assert cli_main(["plan", "--function", "acme-dbmigrate", "--dir", str(tmp_path), "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert [problem["error"] for problem in printed["problems"]] == ["ChecksumMismatchError"]
    assert invoked == ["acme-dbmigrate", "acme-dbmigrate"]


def test_remote_plan_says_how_pending_files_run_and_names_a_broken_one(
    function: Function, pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    function.invoke("invoke_migrate.json")
    new = {
        "projectdb/202401020900_index.up.sql": "CREATE INDEX CONCURRENTLY users_i ON users (id);\n",
        "projectdb/202401021000_split.up.sql": "-- dbmigrate: transaction=false\nCREATE TABLE s ();\n",
        "projectdb/202401021100_broken.up.sql": "CREATE TABLE (;\n",
    }
    result = remote(function, tmp_path, {**BASE, **new})
    modes = {entry["file"]: entry for entry in by_name(result)["projectdb"]["pending_files"]}
    assert modes["projectdb/202401020900_index.up.sql"]["mode"] == "autocommit"
    assert modes["projectdb/202401021000_split.up.sql"]["declared"] is True
    broken = modes["projectdb/202401021100_broken.up.sql"]
    assert broken["mode"] is None and broken["error"]["error"] == "SqlError" and broken["error"]["line"] == 1
    assert [problem["error"] for problem in result["problems"]] == ["SqlError"]


def test_a_manifest_with_another_action_or_a_bad_entry_is_refused(function: Function) -> None:
    with pytest.raises(ConfigError, match="a manifest goes with the plan action"):
        function.invoke({"action": "migrate", "manifest": []})
    with pytest.raises(ConfigError, match="a manifest entry is not"):
        function.invoke({"action": "plan", "manifest": [{"file": "projectdb/1_x.up.sql", "sha256": "short"}]})


# -- one target of a fleet, as the fleet's state machine invokes it -------------------------------


@pytest.fixture(scope="module")
def second_server_running() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres().start()
    yield server
    server.stop()


@pytest.fixture
def second_server(second_server_running: EmbeddedPostgres) -> EmbeddedPostgres:
    """Another PostgreSQL server, a second target of the fleet, as new for each test."""
    reset_cluster(second_server_running)
    return second_server_running


def target(function: Function, server: EmbeddedPostgres, name: str, **fields: Any) -> dict[str, Any]:
    """The payload for ``server`` as a target, its credentials in a secret of their own."""
    secret = {"username": server.user, "password": server.password}
    arn = function.aws.secretsmanager.create_secret(Name=f"fleet-{name}", SecretString=json.dumps(secret))["ARN"]
    spec = {"name": name, "host": server.host, "port": server.port, "secret_arn": arn, **fields}
    return {"action": "migrate", "target": spec}


def test_a_fleet_target_migrates_its_own_server_and_answers_what_it_applied(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres
) -> None:
    first = function.invoke(target(function, pg, "eu"))
    second = function.invoke(target(function, second_server, "us"))
    for answer, name in ((first, "eu"), (second, "us")):
        assert answer == {
            "target": name,
            "done": True,
            "applied": [
                {"database": "postgres", "versions": ["202401010000"]},
                {"database": "projectdb", "versions": ["202401010100"]},
            ],
            "error": None,
            "errors": [],
        }
    assert tables(second_server, "projectdb") == ["users"]
    again = function.invoke(target(function, second_server, "us-again", databases=["projectdb"]))
    assert (again["applied"], again["error"], again["done"]) == ([], None, True)


def test_a_failing_target_answers_its_error_with_file_and_line_and_masks_the_password(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.upload({"projectdb/202401020000_broken.up.sql": "CREATE TABLE ok ();\nSELECT * FROM nope;\n"})
    answer = function.invoke(target(function, pg, "eu"))
    assert answer["done"] is True
    assert [entry["database"] for entry in answer["applied"]] == ["postgres", "projectdb"]
    error = answer["error"]
    assert (error["error"], error["file"], error["line"]) == ("SqlError", "projectdb/202401020000_broken.up.sql", 2)
    assert pg.password not in json.dumps(answer)


def test_a_target_whose_time_runs_short_answers_not_done_and_the_next_invocation_continues(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.setenv(MIN_TIME_LEFT_S="30")
    slow = {"projectdb/202401020000_slow.up.sql": "CREATE TABLE slow ();\nSELECT pg_sleep(2.5);\n"}
    function.upload({**slow, "projectdb/202401030000_after.up.sql": "CREATE TABLE after ();\n"})
    payload = target(function, pg, "eu")
    short = function.invoke(payload, Context(timeout_s=32.0))  # 2 s beyond the reserve; the slow file takes 2.5
    assert (short["done"], short["error"]) == (False, None)
    assert short["applied"][-1] == {"database": "projectdb", "versions": ["202401010100", "202401020000"]}
    rest = function.invoke(payload)
    assert rest == {
        "target": "eu",
        "done": True,
        "applied": [{"database": "projectdb", "versions": ["202401030000"]}],
        "error": None,
        "errors": [],
    }


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"host": "db.internal; DROP"}, "host"),
        ({"port": True}, "port"),
        ({"port": 70000}, "port"),
        ({"secret_arn": "arn:aws:s3:::bucket"}, "secret_arn"),
        ({"name": ""}, "name"),
        ({"databases": ["Bad-Name"]}, "database name"),
        ({"tenant_group": {"name": "t", "match": "t_%"}, "databases": ["projectdb"]}, "not both"),
        ({"password": "x"}, "unknown field"),
    ],
)
def test_a_malformed_fleet_target_is_refused_naming_the_field(
    function: Function, pg: EmbeddedPostgres, change: dict[str, Any], says: str
) -> None:
    payload = target(function, pg, "eu")
    payload["target"] |= change
    with pytest.raises(ConfigError) as refused:
        function.invoke(payload)
    assert says in str(refused.value)
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'projectdb'") == [(0,)]


def test_a_fleet_payload_with_other_fields_is_refused(function: Function, pg: EmbeddedPostgres) -> None:
    payload = {**target(function, pg, "eu"), "databases": ["projectdb"]}
    with pytest.raises(ConfigError, match="only action"):
        function.invoke(payload)


TENANT_FILES = {
    "postgres/202401010001_tenants.up.sql": "".join(f"CREATE DATABASE tenant_{n};\n" for n in range(1, 6)),
    "tenant/202402010000_accounts.up.sql": "CREATE TABLE accounts (id int PRIMARY KEY);\n",
    "tenant/202402020000_plans.up.sql": "CREATE TABLE plans (id int PRIMARY KEY);\n",
}
GROUP = {"name": "tenant", "match": "tenant_%"}


def test_a_tenant_group_gets_the_folder_on_every_matching_database_and_a_failing_one_stops_no_other(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.upload(TENANT_FILES)
    function.invoke(target(function, pg, "root-only", databases=["postgres"]))
    query(pg, "tenant_3", "CREATE TABLE plans (id int)")  # tenant 3's second file will fail
    payload = target(function, pg, "eu-tenants", tenant_group=GROUP)

    answer = function.invoke(payload)
    assert answer["done"] is True
    assert [(e["database"], e["versions"]) for e in answer["applied"]] == [
        (f"tenant_{n}", ["202402010000", "202402020000"] if n != 3 else ["202402010000"]) for n in range(1, 6)
    ]
    assert [(e["database"], e["file"]) for e in answer["errors"]] == [("tenant_3", "tenant/202402020000_plans.up.sql")]
    assert answer["error"] == answer["errors"][0]
    assert history(pg, "tenant_5") == [(202402010000, "applied"), (202402020000, "applied")]
    assert query(pg, "tenant_5", "SELECT file FROM dbmigrate.history ORDER BY 1")[0] == (
        "tenant/202402010000_accounts.up.sql",
    )
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'tenant'") == [(0,)]

    query(pg, "tenant_3", "DROP TABLE plans")
    query(pg, "postgres", "CREATE DATABASE tenant_6")  # a tenant created later gets every file
    again = function.invoke(payload)
    assert [(e["database"], e["versions"]) for e in again["applied"]] == [
        ("tenant_3", ["202402020000"]),
        ("tenant_6", ["202402010000", "202402020000"]),
    ]
    assert (again["error"], again["errors"]) == (None, [])


def test_a_tenant_groups_target_lists_the_bucket_once_and_reads_each_file_once(
    function: Function, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = watch_s3(monkeypatch, "before-call.s3", lambda model, **_: model.name)
    function.upload(TENANT_FILES)

    answer = function.invoke(target(function, pg, "eu-tenants", tenant_group=GROUP))

    assert [entry["database"] for entry in answer["applied"]] == ["postgres", *(f"tenant_{n}" for n in range(1, 6))]
    assert calls.count("ListObjectsV2") == 1, "the root's run and the five tenants' share one listing"
    assert calls.count("GetObject") == len(BASE) + len(TENANT_FILES) - 1, "each file once (projectdb's not at all)"


def test_a_tenant_group_runs_the_root_first_so_the_tenants_it_creates_are_migrated_at_once(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.upload(TENANT_FILES)
    answer = function.invoke(target(function, pg, "eu-tenants", tenant_group=GROUP))
    assert answer["applied"][0]["database"] == "postgres"
    assert [e["database"] for e in answer["applied"][1:]] == [f"tenant_{n}" for n in range(1, 6)]
    assert "projectdb" not in [e["database"] for e in answer["applied"]], "only the root and the group"


@pytest.mark.parametrize(
    ("group", "says"),
    [
        ({"name": "nofolder", "match": "tenant_%"}, "no folder nofolder/"),
        ({"name": "tenant", "match": "tenant_%'; DROP"}, "LIKE pattern"),
        ({"name": "Tenant", "match": "tenant_%"}, "database name"),
        ({"name": "tenant"}, "{name, match}"),
    ],
)
def test_a_bad_tenant_group_is_refused_or_answered_naming_it(
    function: Function, pg: EmbeddedPostgres, group: dict[str, str], says: str
) -> None:
    function.upload(TENANT_FILES)
    try:
        answer = function.invoke(target(function, pg, "eu-tenants", tenant_group=group))
    except ConfigError as refused:
        assert says in str(refused)
    else:
        assert says in answer["error"]["message"]


def test_a_tenant_whose_name_this_tool_cannot_migrate_is_named(function: Function, pg: EmbeddedPostgres) -> None:
    function.upload(TENANT_FILES)
    query(pg, "postgres", 'CREATE DATABASE "tenant_Odd"')
    try:
        answer = function.invoke(target(function, pg, "eu-tenants", tenant_group=GROUP))
    finally:
        query(pg, "postgres", 'DROP DATABASE "tenant_Odd"')
    assert "['tenant_Odd'] match 'tenant_%'" in answer["error"]["message"]


def test_the_fleet_state_machine_runs_the_real_function_on_two_servers_and_a_tenant_group(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres
) -> None:
    """The fleet's definition in moto's ASL interpreter, each lambda:invoke delivered to this handler."""
    function.upload(TENANT_FILES)
    function.invoke(target(function, pg, "root-only", databases=["postgres"]))
    query(pg, "tenant_4", "CREATE TABLE plans (id int)")  # tenant 4's second file will fail
    specs = [
        target(function, second_server, "us")["target"] | {"databases": ["postgres", "projectdb"]},
        target(function, pg, "eu")["target"] | {"databases": ["projectdb"]},
        target(function, pg, "eu-tenants")["target"],
    ]
    fleet = [
        FleetTarget(spec["name"], spec["host"], spec["secret_arn"], spec["port"], tuple(spec.get("databases", ())))
        for spec in specs
    ]
    fleet[2] = replace(fleet[2], tenant_group=FleetTenantGroup("tenant", "tenant_%"))
    calls: list[str] = []

    def invoke(name: str, event: Any) -> Any:
        calls.append(event["target"]["name"])
        return handler(event, Context(function_name=name))

    rollout = Rollout(canary=1, max_concurrency=1, tolerance=Tolerance(count=1))
    definition = fleet_definition(fleet, rollout, function_arn="arn:aws:lambda:us-east-1:123456789012:function:m")
    with LocalStepFunctions(function.aws.endpoint, function.aws.region, invoke) as sfn:
        done = sfn.run(sfn.create_state_machine("fleet", definition), {}, timeout_s=120)
        assert done.status == "SUCCEEDED", (done.error, done.cause)
        report = done.output
        assert (report["failed"], report["tolerated"]) == (1, 1)
        outcomes = {outcome["target"]: outcome for outcome in report["outcomes"]}
        assert outcomes["us"]["stage"] == "canary" and outcomes["us"]["status"] == "succeeded"
        assert outcomes["eu"]["status"] == "succeeded"
        failed = outcomes["eu-tenants"]
        assert failed["status"] == "failed"
        assert (failed["error"]["database"], failed["error"]["file"]) == (
            "tenant_4",
            "tenant/202402020000_plans.up.sql",
        )
        assert history(pg, "tenant_5") == [(202402010000, "applied"), (202402020000, "applied")]
        assert tables(second_server, "projectdb") == ["users"]

        query(pg, "tenant_4", "DROP TABLE plans")
        again = sfn.run(sfn.create_state_machine("fleet-again", definition), {}, timeout_s=120)
        assert again.status == "SUCCEEDED" and again.output["failed"] == 0
        runs = {o["target"]: [a for run in o["runs"] for a in run["applied"]] for o in again.output["outcomes"]}
        assert runs == {"us": [], "eu": [], "eu-tenants": [{"database": "tenant_4", "versions": ["202402020000"]}]}
    assert calls[0] == "us", "the canary first"


def test_each_tenant_takes_its_own_lock_so_one_held_elsewhere_stops_only_that_tenant(
    function: Function, pg: EmbeddedPostgres
) -> None:
    function.upload(TENANT_FILES)
    function.invoke(target(function, pg, "root-only", databases=["postgres"]))
    function.setenv(LOCK_WAIT_S="1")
    holder = psycopg2.connect(pg.dsn("tenant_3"))  # another run, busy on tenant_3 alone
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (lock_key("dbmigrate"),))
        answer = function.invoke(target(function, pg, "eu-tenants", tenant_group=GROUP))
    finally:
        holder.close()
    assert [(e["error"], e["database"]) for e in answer["errors"]] == [("LockTimeoutError", "tenant_3")]
    assert [e["database"] for e in answer["applied"]] == ["tenant_1", "tenant_2", "tenant_4", "tenant_5"]
    assert tables(pg, "tenant_3") == [], "not a file of it ran"


# -- the fleet from the function: the deploy-time run and uploads start its state machine ----------

FLEET_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:acme-dbmigrate-migrate"


@dataclass
class DeployedFleet:
    """The fleet's state machine in moto's interpreter, its tasks delivered to this handler."""

    sfn: LocalStepFunctions
    arn: str
    calls: list[dict[str, Any]]

    def execution(self, arn: str) -> Any:
        return self.sfn.wait(arn, timeout_s=120)


@pytest.fixture
def deployed_fleet(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres
) -> Iterator[DeployedFleet]:
    """Three targets: the test server's root and projectdb, its tenant group, and the second server."""
    function.upload(TENANT_FILES)
    specs = {
        "eu": target(function, pg, "eu")["target"],
        "eu-tenants": target(function, pg, "eu-tenants")["target"],
        "us": target(function, second_server, "us")["target"],
    }
    fleet = [
        FleetTarget("eu", pg.host, specs["eu"]["secret_arn"], pg.port, databases=("postgres", "projectdb")),
        FleetTarget(
            "eu-tenants",
            pg.host,
            specs["eu-tenants"]["secret_arn"],
            pg.port,
            tenant_group=FleetTenantGroup("tenant", "tenant_%"),
        ),
        FleetTarget("us", second_server.host, specs["us"]["secret_arn"], second_server.port, ("postgres", "projectdb")),
    ]
    calls: list[dict[str, Any]] = []

    def invoke(name: str, event: Any) -> Any:
        calls.append(event)
        return handler(event, Context(function_name=name))

    rollout = Rollout(canary=1, max_concurrency=2, tolerance=Tolerance(count=0))
    with LocalStepFunctions(function.aws.endpoint, function.aws.region, invoke) as sfn:
        arn = sfn.create_state_machine(
            f"acme-fleet-{len(function.aws.s3.list_buckets()['Buckets'])}-{time.monotonic_ns()}",
            fleet_definition(fleet, rollout, function_arn=FLEET_FUNCTION_ARN),
        )
        function.setenv(FLEET_STATE_MACHINE_ARN=arn)
        yield DeployedFleet(sfn, arn, calls)


def deploy(**fields: Any) -> dict[str, Any]:
    return {"action": "fleet", "tf": {"action": "create", "prev_input": None}, **fields}


def test_the_deploy_time_fleet_run_waits_for_every_target_and_answers_the_report(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres, deployed_fleet: DeployedFleet
) -> None:
    context = Context()
    result = function.invoke(deploy(), context)

    assert result["execution"].endswith(f":deploy-{context.aws_request_id}")
    assert (result["status"], result["targets"], result["failed"]) == ("succeeded", 3, 0)
    assert [outcome["target"] for outcome in result["outcomes"]] == ["eu", "eu-tenants", "us"]
    assert tables(second_server, "projectdb") == ["users"]
    assert [history(pg, f"tenant_{n}") for n in (1, 5)] == [[(202402010000, "applied"), (202402020000, "applied")]] * 2
    assert all(call["folders"] is None for call in deployed_fleet.calls)


def test_a_failed_fleet_fails_the_deploy_naming_the_target_file_and_line(
    function: Function, pg: EmbeddedPostgres, deployed_fleet: DeployedFleet
) -> None:
    function.upload({"tenant/202402030000_broken.up.sql": "CREATE TABLE ok (id int);\nCREATE TABEL broken (id int);\n"})

    with pytest.raises(MigrationError) as failed:
        function.invoke(deploy())

    assert type(failed.value).__name__ == "FleetError"
    text = str(failed.value)
    assert "1 wave targets failed, more than the 0 tolerated" in text
    assert "eu-tenants (tenant/202402030000_broken.up.sql:2: " in text
    assert [outcome["target"] for outcome in failed.value.details["failed"]] == ["eu-tenants"]
    assert tables(pg, "tenant_1") == ["accounts", "plans"], "the broken file left nothing behind"


def test_a_failed_canary_fails_the_deploy_and_no_wave_runs(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres, deployed_fleet: DeployedFleet
) -> None:
    function.upload({"projectdb/202401020900_add_widgets.up.sql": "CREATE TABLE widgets (id int REFERENCES nowhere);"})

    with pytest.raises(MigrationError, match="canary targets failed; the waves did not run") as failed:
        function.invoke(deploy())

    assert "eu (projectdb/202401020900_add_widgets.up.sql:1: " in str(failed.value)
    assert failed.value.details["not_run"] == ["eu-tenants", "us"]
    assert {call["target"]["name"] for call in deployed_fleet.calls} == {"eu"}
    assert tables(second_server, "postgres") == []


def test_a_named_deploy_execution_runs_once_and_a_repeat_answers_its_report(
    function: Function, deployed_fleet: DeployedFleet
) -> None:
    first = function.invoke(deploy(execution="deploy-content-1"))
    calls = len(deployed_fleet.calls)
    again = function.invoke(deploy(execution="deploy-content-1"))

    assert again == first
    assert len(deployed_fleet.calls) == calls, "the execution of that name ran before: nothing runs again"


def test_a_fleet_that_outlives_the_invocation_fails_it_saying_the_execution_goes_on(
    function: Function, deployed_fleet: DeployedFleet
) -> None:
    with pytest.raises(MigrationError, match=r"is still running after .* it goes on by itself") as still:
        function.invoke(deploy(), Context(timeout_s=10.5))

    assert "aws stepfunctions describe-execution --execution-arn" in str(still.value)
    assert deployed_fleet.execution(still.value.details["execution"]).succeeded


def test_a_deploy_waits_for_a_running_execution_before_it_starts_its_own(
    function: Function, deployed_fleet: DeployedFleet
) -> None:
    earlier = deployed_fleet.sfn.start_execution(deployed_fleet.arn, {"folders": None}, name="upload-earlier")

    result = function.invoke(deploy())

    client = deployed_fleet.sfn.client
    ended = client.describe_execution(executionArn=earlier)
    started = client.describe_execution(executionArn=result["execution"])
    assert ended["status"] == "SUCCEEDED"
    assert started["startDate"] >= ended["stopDate"]
    assert all(not run["applied"] for outcome in result["outcomes"] for run in outcome["runs"])


def upload_event(*keys: str) -> dict[str, Any]:
    record = event("s3_put.json")["Records"][0]
    records = []
    for key in keys:
        item = json.loads(json.dumps(record))
        item["s3"]["object"]["key"] = quote(PREFIX + key)
        records.append(item)
    return {"Records": records}


def test_an_upload_to_a_fleet_starts_one_execution_over_the_folders_it_changed(
    function: Function, pg: EmbeddedPostgres, second_server: EmbeddedPostgres, deployed_fleet: DeployedFleet
) -> None:
    function.invoke(deploy())
    new_file = "tenant/202402030000_notes.up.sql"
    function.upload({new_file: "CREATE TABLE notes (id int);\n"})
    deployed_fleet.calls.clear()

    started = function.invoke(upload_event(new_file))
    again = function.invoke(upload_event(new_file))  # Lambda's retry, or the batch's next event

    assert (started["status"], started["started"]) == ("running", True)
    assert again["execution"] == started["execution"]
    done = deployed_fleet.execution(started["execution"])
    listed = deployed_fleet.sfn.client.list_executions(stateMachineArn=deployed_fleet.arn)["executions"]
    assert [item["name"] for item in listed if item["name"].startswith("upload-")] == [done.arn.rsplit(":", 1)[-1]]
    assert function.invoke(upload_event(new_file))["started"] is False, "ended: Step Functions refuses the name"
    assert done.succeeded, done.cause
    statuses = {outcome["target"]: outcome["status"] for outcome in done.output["outcomes"]}
    assert statuses == {"eu": "skipped", "eu-tenants": "succeeded", "us": "skipped"}
    assert all(call["folders"] == ["tenant"] for call in deployed_fleet.calls)
    assert tables(pg, "tenant_3") == ["accounts", "notes", "plans"]


def test_the_fleet_action_without_a_fleet_is_refused_naming_the_variable(function: Function) -> None:
    with pytest.raises(ConfigError, match="FLEET_STATE_MACHINE_ARN is not set"):
        function.invoke(deploy())


# -- dbmigrate fleet status|plan: every target looked at through the function ---------------------


FleetCli = Callable[..., tuple[int, str]]


@pytest.fixture
def fleet_cli(function: Function, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> FleetCli:
    """``dbmigrate fleet ...`` with its Lambda invoke delivered to this handler (as JSON crosses the wire):
    its exit code and what it printed."""

    def invoker(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        assert name == "acme-dbmigrate"
        return lambda payload: json.loads(json.dumps(function.invoke(json.loads(json.dumps(payload)))))

    monkeypatch.setattr("dbmigrate.cli_remote.lambda_invoker", invoker)  # cli imports it when fleet runs

    def run(*argv: str) -> tuple[int, str]:
        code = cli_main(["fleet", *argv, "--function", "acme-dbmigrate"])
        return code, capsys.readouterr().out

    return run


def by_target(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["target"]: item for item in result["targets"]}


def test_fleet_status_shows_every_target_in_its_stage_with_what_each_database_holds(
    function: Function, pg: EmbeddedPostgres, deployed_fleet: DeployedFleet, fleet_cli: FleetCli
) -> None:
    before = by_target(function.invoke({"action": "fleet-status"}))
    assert [(name, item["stage"]) for name, item in before.items()] == [
        ("eu", "canary"),
        ("eu-tenants", "wave_1"),
        ("us", "wave_1"),
    ]
    assert before["us"]["server"].endswith(f":{deployed_fleet_port(deployed_fleet, 'us')}")
    assert [(d["name"], d["exists"], d["pending"]) for d in before["eu-tenants"]["databases"]] == [
        ("postgres", True, [202401010000, 202401010001])
    ], "no tenant database yet: the root's files create them"

    function.invoke(deploy())
    function.upload({"tenant/202402030000_notes.up.sql": "CREATE TABLE notes (id int);\n"})
    code, out = fleet_cli("status", "--json")
    assert code == 0
    after = by_target(json.loads(out))
    tenants = {d["name"]: (d["applied"], d["pending"]) for d in after["eu-tenants"]["databases"]}
    assert tenants == {"postgres": (2, []), **{f"tenant_{n}": (2, [202402030000]) for n in range(1, 6)}}
    assert [(d["name"], d["applied"], d["pending"]) for d in after["us"]["databases"]] == [
        ("postgres", 2, []),
        ("projectdb", 1, []),
    ]
    assert "history" not in after["us"]["databases"][0], "a summary per database, not its history rows"
    assert tables(pg, "tenant_1") == ["accounts", "plans"], "a look applies nothing"

    code, printed = fleet_cli("status")
    assert code == 0
    assert f"target eu-tenants (wave_1, {pg.host}:{pg.port})" in printed
    assert re.search(r"tenant_3\s+202402020000\s+2\s+1", printed)
    assert printed.rstrip().endswith("3 target(s): 2 up to date, 1 pending, 0 with problems")


def deployed_fleet_port(deployed_fleet: DeployedFleet, name: str) -> int:
    definition = json.loads(
        deployed_fleet.sfn.client.describe_state_machine(stateMachineArn=deployed_fleet.arn)["definition"]
    )
    payloads = [p for s in definition["States"].values() if s["Type"] == "Pass" for p in s.get("Result") or []]
    return int(next(p["port"] for p in payloads if isinstance(p, dict) and p.get("name") == name))


def test_fleet_status_names_the_target_whose_history_drifted_and_exits_1(
    function: Function, deployed_fleet: DeployedFleet, fleet_cli: FleetCli
) -> None:
    function.invoke(deploy())
    function.upload({"tenant/202402010000_accounts.up.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY);\n"})

    code, printed = fleet_cli("status")
    assert code == 1
    assert re.search(r"tenant_2\s+202402020000\s+2\s+0\s+1 changed", printed)
    problems = [line for line in printed.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 5 and all(line.startswith("problem: eu-tenants: ") for line in problems), problems
    assert "202402010000" in problems[0]


def test_a_target_that_cannot_be_reached_is_named_and_the_others_are_still_looked_at(
    function: Function, pg: EmbeddedPostgres, deployed_fleet: DeployedFleet, refusing_port: int
) -> None:
    function.setenv(CONNECT_TIMEOUT_S="2")
    dead = target(function, pg, "ap")["target"]
    fleet = [
        FleetTarget("ap", "127.0.0.1", dead["secret_arn"], refusing_port, ("postgres",)),
        FleetTarget("eu", pg.host, dead["secret_arn"], pg.port, ("postgres", "projectdb")),
    ]
    rollout = Rollout(canary=1, max_concurrency=1, tolerance=Tolerance(count=0))
    arn = deployed_fleet.sfn.create_state_machine(
        f"acme-fleet-dead-{time.monotonic_ns()}", fleet_definition(fleet, rollout, function_arn=FLEET_FUNCTION_ARN)
    )
    function.setenv(FLEET_STATE_MACHINE_ARN=arn)

    result = function.invoke({"action": "fleet-status"})

    looked = by_target(result)
    assert looked["ap"]["databases"] == []
    assert [error["error"] for error in looked["ap"]["errors"]] == ["DatabaseConnectError"]
    assert [d["name"] for d in looked["eu"]["databases"]] == ["postgres", "projectdb"]
    assert [problem["target"] for problem in result["problems"]] == ["ap"]
    assert result["problems"][0]["message"].startswith("ap: ")
    assert pg.password not in json.dumps(result)


class SilentServer:
    """A server on 127.0.0.1 that accepts connections and never answers: how many it held at once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.most = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            conn.setblocking(False)
            self.held = [held for held in self.held if _open(held)]
            self.most = max(self.most, len(self.held))

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def _open(conn: socket.socket) -> bool:
    """Whether the client still holds the connection (what it sent, a startup packet, is read and dropped)."""
    try:
        while conn.recv(4096):
            pass
    except BlockingIOError:
        return True  # nothing more to read, still connected
    except OSError:
        return False
    return False  # the client closed it


def test_targets_that_do_not_answer_are_waited_for_together_and_each_is_named(
    function: Function, pg: EmbeddedPostgres, deployed_fleet: DeployedFleet
) -> None:
    function.setenv(CONNECT_TIMEOUT_S="2")
    silent = SilentServer()
    secret = target(function, pg, "silent")["target"]["secret_arn"]
    fleet = [
        *(FleetTarget(f"silent-{n}", "127.0.0.1", secret, silent.port, ("postgres",)) for n in range(1, 4)),
        FleetTarget("eu", pg.host, secret, pg.port, ("postgres", "projectdb")),
    ]
    rollout = Rollout(canary=0, max_concurrency=4, tolerance=Tolerance(count=0))
    arn = deployed_fleet.sfn.create_state_machine(
        f"acme-fleet-silent-{time.monotonic_ns()}", fleet_definition(fleet, rollout, function_arn=FLEET_FUNCTION_ARN)
    )
    function.setenv(FLEET_STATE_MACHINE_ARN=arn)
    try:
        result = function.invoke({"action": "fleet-status"})
    finally:
        silent.close()

    assert silent.most == 3, "the three silent targets were waited for at once"
    assert [item["target"] for item in result["targets"]] == ["silent-1", "silent-2", "silent-3", "eu"]
    assert [problem["target"] for problem in result["problems"]] == ["silent-1", "silent-2", "silent-3"]
    assert all(p["error"] == "DatabaseConnectError" for p in result["problems"])
    assert [d["name"] for d in by_target(result)["eu"]["databases"]] == ["postgres", "projectdb"]


def test_fleet_plan_sends_the_local_folder_and_says_per_target_what_an_upload_would_apply(
    function: Function, pg: EmbeddedPostgres, deployed_fleet: DeployedFleet, tmp_path: Path, fleet_cli: FleetCli
) -> None:
    function.invoke(deploy())
    local = {
        **BASE,
        **TENANT_FILES,
        "tenant/202402030000_index.up.sql": "CREATE INDEX CONCURRENTLY accounts_i ON accounts (id);\n",
        "tenant/202402040000_broken.up.sql": "CREATE TABLE (;\n",
    }
    write_files(tmp_path, local)

    code, out = fleet_cli("plan", "--dir", str(tmp_path), "--json")
    assert code == 1, "a file would fail"
    result = json.loads(out)
    tenants = by_target(result)["eu-tenants"]["databases"]
    assert [d["name"] for d in tenants] == ["postgres", *(f"tenant_{n}" for n in range(1, 6))]
    pending = {entry["file"]: entry for entry in tenants[3]["pending_files"]}
    assert pending["tenant/202402030000_index.up.sql"]["mode"] == "autocommit"
    assert pending["tenant/202402040000_broken.up.sql"]["error"]["line"] == 1
    assert [d["pending"] for d in by_target(result)["us"]["databases"]] == [[], []]
    assert {problem["target"] for problem in result["problems"]} == {"eu-tenants"}
    assert history(pg, "tenant_1") == [(202402010000, "applied"), (202402020000, "applied")], "nothing applied"

    code, printed = fleet_cli("plan", "--dir", str(tmp_path))
    assert code == 1
    assert "target us (wave_1, " in printed and "tenant_5: 2 pending (current 202402020000)" in printed
    assert "+ tenant/202402030000_index.up.sql  (statement by statement: " in printed


def test_a_fleet_look_short_of_time_names_the_targets_it_did_not_reach(
    function: Function, deployed_fleet: DeployedFleet
) -> None:
    function.setenv(MIN_TIME_LEFT_S="30")

    result = function.invoke({"action": "fleet-status"}, Context(timeout_s=20))

    assert [item["databases"] for item in result["targets"]] == [[], [], []]
    assert [problem["message"] for problem in result["problems"]] == [
        f"{name}: {name} was not looked at: the time ran short" for name in ("eu", "eu-tenants", "us")
    ]


@pytest.mark.parametrize(
    ("payload", "refusal"),
    [
        ({"action": "fleet-status", "manifest": []}, "fleet-status takes only action, not manifest"),
        ({"action": "fleet-plan", "databases": ["x"]}, "fleet-plan takes only action and manifest, not databases"),
        ({"action": "fleet-plan", "manifest": "x"}, "the manifest must be a list"),
    ],
)
def test_a_malformed_fleet_look_is_refused_naming_the_field(
    function: Function, deployed_fleet: DeployedFleet, payload: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ConfigError, match=refusal):
        function.invoke(payload)


def test_a_fleet_look_without_a_fleet_names_the_variable(function: Function) -> None:
    with pytest.raises(ConfigError, match="FLEET_STATE_MACHINE_ARN is not set"):
        function.invoke({"action": "fleet-status"})


@pytest.mark.parametrize("payload", [deploy(), {"action": "fleet-status"}])
def test_unreachable_step_functions_fails_fast_naming_the_route_it_needs(
    function: Function, deployed_fleet: DeployedFleet, refusing_endpoint: str, payload: dict[str, Any]
) -> None:
    function.setenv(AWS_ENDPOINT_URL_SFN=refusing_endpoint)
    started = time.monotonic()

    with pytest.raises(MigrationError, match="Step Functions cannot be reached") as failed:
        function.invoke(payload)

    assert time.monotonic() - started < 10
    assert "a route to Step Functions" in str(failed.value.hint)
    assert deployed_fleet.calls == []
