"""Planning is a pure function of the files and the history: no database needed."""

from __future__ import annotations

import dataclasses

import pytest

from dbmigrate.errors import (
    ChecksumMismatchError,
    ConfigError,
    ForeignHistoryError,
    OutOfOrderError,
    PartialMigrationError,
)
from dbmigrate.history import HistoryRow, Status
from dbmigrate.model import MigrationRef
from dbmigrate.plan import down_files, plan_database


def ref(version: int) -> MigrationRef:
    return MigrationRef("db", version, f"v{version}", f"db/{version}_v{version}.up.sql")


def row(version: int, checksum: str = "c", status: Status = Status.APPLIED, done: int | None = None) -> HistoryRow:
    return HistoryRow(
        version,
        f"v{version}",
        f"db/{version}_v{version}.up.sql",
        checksum,
        status,
        statements_done=done,
        statements_total=3 if done is not None else None,
    )


def test_files_without_history_are_pending_in_version_order() -> None:
    plan = plan_database("db", [ref(3), ref(1), ref(2)], [row(1)], {1: "c"})
    assert [r.version for r in plan.pending] == [2, 3]
    assert plan.current_version == 1
    assert plan.refusal(allow_out_of_order=False) is None


def test_changed_checksum_of_an_applied_file_is_a_refusal_naming_both_checksums() -> None:
    plan = plan_database("db", [ref(1), ref(2)], [row(1, "old")], {1: "new"})
    refusal = plan.refusal(allow_out_of_order=False)
    assert isinstance(refusal, ChecksumMismatchError)
    assert refusal.file == "db/1_v1.up.sql"
    assert "was old, is now new" in str(refusal)


def test_version_below_the_newest_applied_is_out_of_order_unless_allowed() -> None:
    plan = plan_database("db", [ref(1), ref(5), ref(9)], [row(1), row(9)], {1: "c", 9: "c"})
    assert [r.version for r in plan.out_of_order] == [5]
    assert isinstance(plan.refusal(allow_out_of_order=False), OutOfOrderError)
    assert plan.refusal(allow_out_of_order=True) is None
    assert [r.version for r in plan.pending] == [5]


def test_unfinished_file_blocks_everything_and_says_how_far_it_got() -> None:
    plan = plan_database("db", [ref(1), ref(2)], [row(1), row(2, status=Status.PARTIAL, done=2)], {1: "c", 2: "c"})
    refusal = plan.refusal(allow_out_of_order=True)
    assert isinstance(refusal, PartialMigrationError)
    assert "statements 1-2 of 3 ran" in str(refusal)
    assert plan.current_version == 1
    assert plan.pending == ()


def test_applied_version_missing_from_the_source_is_noted_not_refused() -> None:
    plan = plan_database("db", [ref(2)], [row(1), row(2)], {2: "c"})
    assert [r.version for r in plan.missing] == [1]
    assert plan.notes == ("version 1 (db/1_v1.up.sql) is applied but no longer in the source",)
    assert plan.refusal(allow_out_of_order=False) is None


def test_database_that_does_not_exist_yet_has_every_file_pending() -> None:
    plan = plan_database("db", [ref(1), ref(2)], [], {}, exists=False)
    assert plan.to_dict()["pending"] == [1, 2]
    assert plan.to_dict()["exists"] is False


def test_a_different_file_at_an_applied_version_is_not_drift_but_another_project() -> None:
    other = MigrationRef("db", 1, "create_invoices", "db/1_create_invoices.up.sql")
    plan = plan_database("db", [other, ref(2)], [row(1, "a")], {1: "b"})
    refusal = plan.refusal(allow_out_of_order=False)
    assert isinstance(refusal, ForeignHistoryError)
    assert (refusal.details["history_file"], refusal.details["source_file"]) == (
        "db/1_v1.up.sql",
        "db/1_create_invoices.up.sql",
    )
    assert "--accept-checksum" not in (refusal.hint or "").replace("repair --accept-checksum would", "")
    assert plan.changed == ()
    assert plan.to_dict()["different"] == [
        {"version": 1, "history_file": "db/1_v1.up.sql", "source_file": "db/1_create_invoices.up.sql"}
    ]


def test_a_renamed_file_with_the_same_content_is_neither_drift_nor_another_file() -> None:
    renamed = MigrationRef("db", 1, "better_name", "db/1_better_name.up.sql")
    plan = plan_database("db", [renamed], [row(1, "c")], {1: "c"})
    assert plan.refusal(allow_out_of_order=False) is None


def test_a_running_record_says_the_next_statement_has_an_unknown_outcome() -> None:
    running = HistoryRow(
        2,
        "v2",
        "db/2_v2.up.sql",
        "c",
        Status.RUNNING,
        statements_done=1,
        statements_total=3,
        error="statement 2 (line 4) was running; if this run is gone its outcome is unknown: check x",
    )
    refusal = plan_database("db", [ref(1), ref(2)], [row(1), running], {1: "c"}).refusal(allow_out_of_order=False)
    assert isinstance(refusal, PartialMigrationError)
    assert refusal.details["outcome_unknown"] == 2
    assert "statement 2: outcome unknown" in refusal.message and "line 4" in refusal.message
    assert "do not simply run it again" in (refusal.hint or "")


def with_down(version: int) -> MigrationRef:
    return dataclasses.replace(ref(version), down_key=f"db/{version}_v{version}.down.sql")


def test_down_undoes_every_applied_version_above_the_target_newest_first_with_its_down_file() -> None:
    refs = [with_down(1), with_down(2), with_down(3)]
    plan = plan_database("db", refs, [row(1), row(2), row(3)], {1: "c", 2: "c", 3: "c"})
    assert [(r.version, key) for r, key in down_files(plan, 1, refs)] == [
        (3, "db/3_v3.down.sql"),
        (2, "db/2_v2.down.sql"),
    ]
    assert down_files(plan, 3, refs) == []


def test_down_names_every_missing_down_file_and_a_target_that_is_no_version() -> None:
    refs = [with_down(1), ref(2), with_down(3)]
    plan = plan_database("db", refs, [row(1), row(2), row(3)], {1: "c", 2: "c", 3: "c"})
    with pytest.raises(ConfigError, match=r"no down file for db/2_v2\.down\.sql") as missing:
        down_files(plan, 0, refs)
    assert missing.value.file == "db/2_v2.down.sql"
    with pytest.raises(ConfigError, match="down target 7 is neither 0") as typo:
        down_files(plan, 7, refs)
    assert typo.value.details["applied"] == [1, 2, 3]


def test_down_is_refused_while_a_file_is_unfinished() -> None:
    refs = [with_down(1), with_down(2)]
    plan = plan_database("db", refs, [row(1), row(2, status=Status.PARTIAL, done=1)], {1: "c"})
    with pytest.raises(PartialMigrationError):
        down_files(plan, 0, refs)
