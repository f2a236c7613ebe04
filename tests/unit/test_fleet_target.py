"""Which fleet targets an upload's folders concern (lambda_src/fleet_target.py), and the payload's folders."""

from __future__ import annotations

from typing import Any

import pytest

from dbmigrate.errors import ConfigError
from dbmigrate.tenants import TenantGroup
from fleet_target import TargetRequest, parse_target

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:eu-AbCdEf"


def request(folders: tuple[str, ...] | None, **fields: Any) -> TargetRequest:
    return TargetRequest("eu", "db.internal", 5432, SECRET, folders=folders, **fields)


@pytest.mark.parametrize(
    ("fields", "folders", "concerned"),
    [
        ({}, None, True),  # a deploy: every target runs
        ({}, ("anything",), True),  # every database of the layout
        ({"databases": ("projectdb",)}, ("projectdb", "tenant"), True),
        ({"databases": ("projectdb",)}, ("tenant",), False),
        ({"databases": ("projectdb",)}, ("postgres",), False),  # its own list has no root database
        ({"tenant_group": TenantGroup("tenant", "tenant_%")}, ("tenant",), True),
        ({"tenant_group": TenantGroup("tenant", "tenant_%")}, ("postgres",), True),  # the root may create tenants
        ({"tenant_group": TenantGroup("tenant", "tenant_%")}, ("projectdb",), False),
    ],
)
def test_a_target_is_concerned_by_the_folders_it_runs(
    fields: dict[str, Any], folders: tuple[str, ...] | None, concerned: bool
) -> None:
    reason = request(folders, **fields).unconcerned("postgres")
    assert (reason is None) == concerned
    if reason is not None:
        assert reason.startswith(f"the upload changed {', '.join(folders or ())}; this target runs ")


def test_a_skipped_answer_is_done_with_nothing_applied_and_its_reason() -> None:
    answer = request(("tenant",), databases=("projectdb",)).skipped("why")
    assert answer == {"target": "eu", "done": True, "applied": [], "error": None, "errors": [], "skipped": "why"}


@pytest.mark.parametrize("folders", [[], "tenant", [1], {"a": 1}])
def test_malformed_folders_are_refused(folders: object) -> None:
    payload = {"action": "migrate", "folders": folders, "target": {"name": "eu", "host": "h", "secret_arn": SECRET}}
    with pytest.raises(ConfigError, match="the payload's folders must be a non-empty list"):
        parse_target(payload)


def test_folders_of_the_payload_are_read() -> None:
    payload = {"action": "migrate", "folders": ["tenant"], "target": {"name": "eu", "host": "h", "secret_arn": SECRET}}
    assert parse_target(payload).folders == ("tenant",)
