"""How the Lambda's events become run requests: no database, no AWS."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from dbmigrate.errors import ConfigError
from events import DEPLOYED_SKIP, DownRequest, Request, RunRequest, Skip, is_deploy_principal, parse_event
from fleet_run import FleetRequest

EVENTS = Path(__file__).parent.parent / "events"
BUCKET = "acme-dbmigrate-migrations"
PREFIX = "migrations/"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def parse(event: object, *, bucket: str = BUCKET, prefix: str = PREFIX, deploy_principal: str | None = None) -> Request:
    return parse_event(event, bucket=bucket, prefix=prefix, root_database="postgres", deploy_principal=deploy_principal)


def run(event: object, **where: Any) -> RunRequest:
    """The run an event asks for (failing the test if it asks for another kind of request)."""
    request = parse(event, **where)
    assert isinstance(request, RunRequest), request
    return request


def skip(event: object, **where: Any) -> Skip:
    """What an event that starts no run says about itself."""
    request = parse(event, **where)
    assert isinstance(request, Skip), request
    return request


def s3_event(*keys: str, bucket: str = BUCKET, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 notification like s3_put.json with the given (already URL-encoded) keys."""
    template = load("s3_put.json")["Records"][0]
    records = []
    for key in keys:
        record = copy.deepcopy(template)
        record["s3"]["object"]["key"] = key
        record["s3"]["bucket"]["name"] = bucket
        record["eventName"] = name
        records.append(record)
    return {"Records": records}


def in_sns(event: dict[str, Any]) -> dict[str, Any]:
    wrapped = load("sns_s3_put.json")
    wrapped["Records"][0]["Sns"]["Message"] = json.dumps(event)
    return wrapped


# -- direct payloads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "action", "databases"),
    [
        ("invoke_migrate.json", "migrate", None),
        ("invoke_plan.json", "plan", None),
        ("invoke_status_projectdb.json", "status", ("projectdb",)),
    ],
)
def test_direct_payload_names_the_action_and_databases(
    fixture: str, action: str, databases: tuple[str, ...] | None
) -> None:
    request = run(load(fixture))
    assert (request.action, request.databases, request.trigger) == (action, databases, "invoke")


def test_repeated_database_names_are_asked_once_in_the_given_order() -> None:
    request = run({"action": "plan", "databases": ["b_db", "a_db", "b_db"]})
    assert request.databases == ("b_db", "a_db")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"action": "drop"}, "unknown action 'drop'"),
        ({"action": "down"}, 'down takes one database name in "database"'),
        ({"action": "down", "database": "projectdb"}, 'down takes the version to end at in "to"'),
        ({"action": "down", "database": "projectdb", "to": True}, 'down takes the version to end at in "to"'),
        ({"action": "down", "databases": ["a"], "database": "a", "to": 1}, "down takes one database name"),
        ({"action": "down", "database": "p", "to": 1, "tf": {"action": "create"}}, "never run by the deploy-time"),
        ({"action": "migrate", "database": ["projectdb"]}, '"database" and "to" belong to the down action'),
        ({"action": "migrate", "colour": 1}, "unknown field(s) in the payload: colour"),
        ({"databases": ["projectdb"]}, "the payload has no action"),
        ({"action": "migrate", "databases": "projectdb"}, "databases must be a non-empty list"),
        ({"action": "migrate", "databases": []}, "databases must be a non-empty list"),
        ({"action": "migrate", "databases": [1]}, "databases must be a non-empty list"),
        ({"action": "migrate", "databases": ["Project-DB"]}, "'Project-DB' is not a valid database name"),
        ({"action": "status", "databases": ["ok", "x;drop"]}, "'x;drop' is not a valid database name"),
        ({"action": "down", "database": "Project", "to": 1}, "'Project' is not a valid database name"),
        ({"action": "migrate", "manifest": []}, "a manifest goes with the plan action"),
        ({"action": "plan", "manifest": {"file": "a"}}, "the manifest must be a list"),
        ({"action": "plan", "manifest": [{"file": "db/1_a.up.sql", "sha256": "x"}]}, "a manifest entry is not"),
        ({"action": "migrate", "content_hash": 5}, "content_hash must be a string"),
        ({"action": "migrate", "tf": {"action": "read"}}, "the tf envelope has action 'read'"),
        ({"action": "migrate", "tf": "create"}, "the tf envelope has action None"),
    ],
)
def test_malformed_payload_is_a_config_error_that_says_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(payload)
    assert message in str(caught.value)
    assert caught.value.hint or "expected" in str(caught.value) or "must" in str(caught.value)


def test_down_is_asked_for_by_database_and_target_version() -> None:
    assert parse({"action": "down", "database": "projectdb", "to": 202401010100}) == DownRequest(
        "projectdb", 202401010100
    )


@pytest.mark.parametrize("event", [None, [], "migrate", 42])
def test_an_event_that_is_not_an_object_is_refused(event: object) -> None:
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse(event)


# -- the aws_lambda_invocation envelope -------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "trigger"), [("terraform_create.json", "create"), ("terraform_update.json", "update")]
)
def test_terraform_create_and_update_run_the_payload_action(fixture: str, trigger: str) -> None:
    request = run(load(fixture))
    assert (request.action, request.databases, request.trigger) == ("migrate", None, f"terraform:{trigger}")


def test_terraform_envelope_without_an_action_migrates() -> None:
    request = run({"tf": {"action": "create", "prev_input": None}})
    assert request.action == "migrate"


def test_terraform_delete_does_nothing_and_says_why() -> None:
    assert skip(load("terraform_delete.json")).result() == {
        "action": None,
        "trigger": "terraform:delete",
        "skipped": "terraform destroy: migrations are never undone",
        "databases": [],
    }


def test_terraform_delete_is_accepted_even_if_the_previous_payload_was_odd() -> None:
    assert isinstance(parse({"action": "plan", "tf": {"action": "delete", "prev_input": {"x": 1}}}), Skip)


# -- S3 notifications, direct and in SNS ------------------------------------------------------


def test_s3_upload_migrates_its_database_after_the_root_database() -> None:
    request = run(load("s3_put.json"))
    assert (request.action, request.databases, request.trigger) == ("migrate", ("postgres", "projectdb"), "s3")


def test_sns_wrapped_upload_is_read_from_the_message_string() -> None:
    request = run(load("sns_s3_put.json"))
    assert (request.action, request.databases, request.trigger) == ("migrate", ("postgres", "projectdb"), "sns")


def test_several_records_make_one_run_over_every_affected_database(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="events")
    request = run(load("s3_several_records.json"))
    assert request.action == "migrate"
    assert request.databases == ("postgres", "projectdb", "reportsdb")
    assert request.ignored_keys == ("migrations/README.md", "other-team/notes.sql")
    skipped = [record for record in caplog.records if record.getMessage().startswith("skipping")]
    assert [getattr(record, "key", None) for record in skipped] == list(request.ignored_keys)


def test_several_sns_records_are_merged_into_one_run() -> None:
    first = in_sns(s3_event("migrations/projectdb/1_a.up.sql"))
    second = in_sns(s3_event("migrations/reportsdb/2_b.up.sql"))
    request = run({"Records": first["Records"] + second["Records"]})
    assert request.databases == ("postgres", "projectdb", "reportsdb")


def test_keys_are_url_decoded_before_matching_the_prefix() -> None:
    event = s3_event("db+migrations/reportsdb/202401020810_cr%C3%A9er_totaux.up.sql")
    request = run(event, prefix="db migrations/")
    assert request.databases == ("postgres", "reportsdb")


def test_root_database_upload_runs_the_root_database_once() -> None:
    assert run(s3_event("migrations/postgres/1_create_db.up.sql")).databases == ("postgres",)


@pytest.mark.parametrize("fixture", ["s3_test_event.json", "sns_s3_test_event.json"])
def test_s3_test_event_does_nothing(fixture: str) -> None:
    assert skip(load(fixture)).reason == "s3:TestEvent"


@pytest.mark.parametrize(
    "key",
    [
        "migrations/README.md",
        "migrations/projectdb/.DS_Store",
        "migrations/projectdb/notes.txt",
        "elsewhere/projectdb/1_a.up.sql",
        "migrations/",
        "migrationsprojectdb/1_a.up.sql",
    ],
)
def test_objects_outside_the_layout_or_prefix_are_skipped(key: str) -> None:
    request = skip(s3_event(key))
    assert request.ignored_keys == (key,)
    assert request.reason == "no migration file in the event"


def test_removed_objects_do_not_start_a_run() -> None:
    request = skip(load("s3_delete.json"))
    assert request.ignored_keys == ("migrations/projectdb/202401020900_add_widgets.up.sql",)


@pytest.mark.parametrize(
    "key", ["migrations/1_stray.up.sql", "migrations/Project/1_a.up.sql", "migrations/a/b/1_c.up.sql"]
)
def test_misnamed_sql_upload_runs_everything_so_the_engine_names_the_file(key: str) -> None:
    request = run(s3_event(key))
    assert (request.action, request.databases) == ("migrate", None)


def test_misnamed_file_in_a_database_folder_runs_that_database() -> None:
    assert run(s3_event("migrations/projectdb/add_widgets.sql")).databases == ("postgres", "projectdb")


def test_records_for_another_bucket_are_refused_naming_both_buckets() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(load("sns_s3_other_bucket.json"))
    assert "'someone-elses-bucket'" in str(caught.value)
    assert f"'{BUCKET}'" in str(caught.value)


def test_one_foreign_record_refuses_the_whole_event() -> None:
    event = s3_event("migrations/projectdb/1_a.up.sql")
    event["Records"] += s3_event("migrations/projectdb/2_b.up.sql", bucket="other")["Records"]
    with pytest.raises(ConfigError, match="bucket 'other'"):
        parse(event)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"Records": []}, "Records must be a non-empty list"),
        ({"Records": [{"EventSource": "aws:sqs"}]}, "unsupported event source 'aws:sqs'"),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "not json"}}]}, "SNS message is not JSON"),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": '{"hello": 1}'}}]}, "does not hold an S3 event"),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {}}]}, "no Sns.Message string"),
        ({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}, "lacks s3.bucket.name"),
    ],
)
def test_malformed_notifications_are_refused(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(event)
    assert message in str(caught.value)


def test_refusals_do_not_quote_the_raw_event() -> None:
    secret_looking = "postgresql://admin:hunter2@db:5432/x"
    with pytest.raises(ConfigError) as caught:
        parse({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": secret_looking}}]})
    assert "hunter2" not in str(caught.value)


def test_log_fields_name_the_request_not_the_event() -> None:
    fields = parse(load("s3_several_records.json")).log_fields()
    assert fields == {
        "action": "migrate",
        "trigger": "s3",
        "databases": ["postgres", "projectdb", "reportsdb"],
        "ignored_keys": ["migrations/README.md", "other-team/notes.sql"],
    }


# -- the deploy's own uploads ---------------------------------------------------------------

DEPLOY_ROLE = "AROA3XFRBF535EXAMPLE"


def by(event: dict[str, Any], principal_id: str) -> dict[str, Any]:
    for record in event["Records"]:
        record["userIdentity"] = {"principalId": principal_id}
    return event


@pytest.mark.parametrize(
    "deploy_principal",
    [f"{DEPLOY_ROLE}:GitHubActions", f"AWS:{DEPLOY_ROLE}:GitHubActions", DEPLOY_ROLE],
    ids=["caller-user-id", "with-aws-prefix", "role-id-every-session"],
)
def test_an_upload_by_the_deploying_principal_starts_no_run(deploy_principal: str) -> None:
    request = skip(load("sns_s3_put_by_deploy_role.json"), deploy_principal=deploy_principal)
    assert request.reason == DEPLOYED_SKIP
    assert request.ignored_keys == ("migrations/projectdb/202401020900_add_widgets.up.sql",)


@pytest.mark.parametrize(
    "principal_id",
    [
        "AWS:AIDAJDPLRKLG7UEXAMPLE",  # an IAM user
        f"AWS:{DEPLOY_ROLE}:alice@example.com",  # another session of the deploying role
        f"AWS:{DEPLOY_ROLE}X:GitHubActions",  # a role whose id merely starts with the deploy role's
        "A3NL1KOZZKExample",  # the account's root user (S3 writes the canonical customer id)
        "",
    ],
)
def test_an_upload_by_anyone_else_runs_at_once(principal_id: str) -> None:
    event = in_sns(by(s3_event("migrations/projectdb/1_a.up.sql"), principal_id))
    request = run(event, deploy_principal=f"{DEPLOY_ROLE}:GitHubActions")
    assert (request.action, request.databases) == ("migrate", ("postgres", "projectdb"))


def test_without_a_deploy_principal_every_upload_runs() -> None:
    assert run(load("sns_s3_put_by_deploy_role.json"), deploy_principal=None).action == "migrate"


def test_a_mixed_event_runs_only_the_databases_others_uploaded_to() -> None:
    deployed = by(s3_event("migrations/reportsdb/2_b.up.sql"), f"AWS:{DEPLOY_ROLE}:GitHubActions")
    uploaded = by(s3_event("migrations/projectdb/1_a.up.sql"), "AWS:AIDAJDPLRKLG7UEXAMPLE")
    event = {"Records": deployed["Records"] + uploaded["Records"]}
    request = run(event, deploy_principal=DEPLOY_ROLE)
    assert request.databases == ("postgres", "projectdb")
    assert request.ignored_keys == ("migrations/reportsdb/2_b.up.sql",)


def test_a_deploy_principal_never_hides_a_foreign_bucket() -> None:
    event = by(s3_event("migrations/projectdb/1_a.up.sql", bucket="someone-else"), f"AWS:{DEPLOY_ROLE}:x")
    with pytest.raises(ConfigError, match="someone-else"):
        parse_event(event, bucket=BUCKET, prefix=PREFIX, deploy_principal=DEPLOY_ROLE)


@pytest.mark.parametrize(
    ("principal_id", "deploy_principal", "same"),
    [
        ("AWS:AIDAJ45Q7YFFAREXAMPLE", "AIDAJ45Q7YFFAREXAMPLE", True),
        ("AWS:AROAEXAMPLE:ci", "AROAEXAMPLE:ci", True),
        ("AWS:AROAEXAMPLE:ci", "AROAEXAMPLE:cd", False),
        ("AWS:AROAEXAMPLE:ci", "AROAEXAMPLE", True),
        ("AWS:AROAEXAMPLE", "AROAEXAMPLE:ci", False),
        ("AWS:AIDAJ45Q7YFFAREXAMPLE2", "AIDAJ45Q7YFFAREXAMPLE", False),
    ],
)
def test_principal_ids_match_whole_or_by_role(principal_id: str, deploy_principal: str, same: bool) -> None:
    assert is_deploy_principal(principal_id, deploy_principal) is same


# -- the fleet: the deploy-time run of every target, and the folders an upload changed -------------


def test_the_fleet_action_is_a_fleet_request_with_its_execution_name() -> None:
    request = parse({"action": "fleet", "tf": {"action": "create", "prev_input": None}, "execution": "deploy-1"})
    assert isinstance(request, FleetRequest)
    assert (request.trigger, request.execution, request.folders, request.wait) == (
        "terraform:create",
        "deploy-1",
        None,
        True,
    )
    assert parse({"action": "fleet"}) == FleetRequest("invoke")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"action": "fleet", "databases": ["projectdb"]}, "the fleet action takes only action, execution, tf"),
        ({"action": "fleet", "execution": "deploy 1"}, "execution name 'deploy 1' is not valid"),
        ({"action": "fleet", "execution": "x" * 81}, "is not valid"),
        ({"action": "fleet", "execution": 7}, "execution must be a string"),
        ({"action": "migrate", "execution": "deploy-1"}, '"execution" belongs to the fleet action'),
        ({"action": "migrate", "folders": ["tenant"]}, '"folders" belongs to a fleet target'),
    ],
)
def test_a_malformed_fleet_payload_is_refused_naming_the_field(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(payload)


@pytest.mark.parametrize(
    ("keys", "folders"),
    [
        (["migrations/projectdb/1_a.up.sql"], ("projectdb",)),
        (["migrations/postgres/1_a.up.sql", "migrations/tenant/2_b.up.sql"], ("postgres", "tenant")),
        (["migrations/tenant/2_b.up.sql", "migrations/tenant/3_c.up.sql"], ("tenant",)),
        (["migrations/1_loose.up.sql"], None),  # a misnamed path: everything runs, and names it
    ],
)
def test_an_upload_names_the_folders_it_changed_without_the_root_it_adds(
    keys: list[str], folders: tuple[str, ...] | None
) -> None:
    records = [record for key in keys for record in s3_event(key)["Records"]]
    assert run({"Records": records}).folders == folders
