"""Day 2 on the database: a major upgrade is not blocked by the parameter group, and a second
destroy does not collide with the first one's final snapshot."""

from __future__ import annotations

from typing import Any

from infra.names import derived_names

from .conftest import SynthesizeWith
from .terraform_json import only, ref


def test_the_parameter_group_is_named_from_a_prefix_and_replaced_before_it_is_destroyed(
    stack: dict[str, Any],
) -> None:
    name, parameters = only(stack, "aws_db_parameter_group")
    _, database = only(stack, "aws_db_instance")
    assert "name" not in parameters, "a fixed name blocks creating the new family's group before the old one goes"
    assert parameters["name_prefix"] == derived_names("dbmigrate")["the DB parameter group's name_prefix"]
    assert parameters["family"] == "postgres16"
    assert parameters["lifecycle"] == {"create_before_destroy": True}
    assert database["parameter_group_name"] == ref("aws_db_parameter_group", name, "name")


def test_a_major_upgrade_gets_a_group_of_the_new_family_and_is_allowed(synthesize_with: SynthesizeWith) -> None:
    stack = synthesize_with(db_engine_version="17.2", db_apply_immediately=True)
    _, parameters = only(stack, "aws_db_parameter_group")
    _, database = only(stack, "aws_db_instance")
    assert (parameters["family"], parameters["name_prefix"]) == ("postgres17", "dbmigrate-postgres17-")
    assert database["engine_version"] == "17.2"
    assert database["allow_major_version_upgrade"] is True, "RDS refuses a major upgrade without it"
    assert database["apply_immediately"] is True


def test_changes_wait_for_the_maintenance_window_by_default(stack: dict[str, Any]) -> None:
    _, database = only(stack, "aws_db_instance")
    assert database["apply_immediately"] is False


def test_the_final_snapshot_is_named_with_the_instances_creation_time(stack: dict[str, Any]) -> None:
    _, database = only(stack, "aws_db_instance")
    lifetime, stamp = only(stack, "terraform_data")
    assert database["skip_final_snapshot"] is False
    assert database["final_snapshot_identifier"] == (
        f'dbmigrate-db-final-${{formatdate("YYYYMMDDhhmmss", terraform_data.{lifetime}.output.created_at)}}'
    )
    # Evaluated once, when created: no diff on later plans, a new value when the instance is new.
    assert stamp["input"] == {"created_at": "${timestamp()}"}
    assert stamp["lifecycle"] == {"ignore_changes": ["input"]}
    assert stamp["triggers_replace"]["identifier"] == database["identifier"]
    assert stamp["triggers_replace"]["kms_key_id"] == database["kms_key_id"]
    assert stamp["triggers_replace"]["username"] == database["username"]
    template = derived_names("dbmigrate")["the final snapshot identifier"]
    assert template.startswith(database["final_snapshot_identifier"].split("${")[0])


def test_the_database_is_protected_from_deletion_by_default(
    stack: dict[str, Any], synthesize_with: SynthesizeWith
) -> None:
    _, database = only(stack, "aws_db_instance")
    assert database["deletion_protection"] is True
    _, unprotected = only(synthesize_with(db_deletion_protection=False), "aws_db_instance")
    assert unprotected["deletion_protection"] is False
