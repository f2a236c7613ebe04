"""The layout of migrations: what is accepted, and what is refused with the file named."""

from __future__ import annotations

import pytest

from dbmigrate.errors import LayoutError
from dbmigrate.model import Entry, MigrationRef, parse_layout


def layout(*keys: str) -> list[MigrationRef]:
    return parse_layout([Entry(key) for key in keys], origin="test")


def problems(*keys: str) -> list[str]:
    with pytest.raises(LayoutError) as caught:
        layout(*keys)
    listed: list[str] = caught.value.details["problems"]
    return listed


def test_files_are_grouped_by_database_and_sorted_by_integer_version() -> None:
    refs = layout(
        "projectdb/10_b.up.sql",
        "projectdb/9_a.up.sql",
        "postgres/1_create.up.sql",
        "projectdb/9_a.down.sql",
    )
    assert [(r.database, r.version) for r in refs] == [("postgres", 1), ("projectdb", 9), ("projectdb", 10)]
    assert refs[1].down_key == "projectdb/9_a.down.sql"
    assert refs[1].description == "a"


def test_versions_wider_than_bigint_and_zero_are_integers() -> None:
    refs = layout("db/0_first.up.sql", "db/123456789012345678901_wide.up.sql", "db/20240101000000_x.up.sql")
    assert [r.version for r in refs] == [0, 20240101000000, 123456789012345678901]


def test_files_that_are_not_sql_and_hidden_entries_are_ignored() -> None:
    assert layout("README.md", "db/notes.txt", ".github/1_x.up.sql", "db/.1_x.up.sql") == []


@pytest.mark.parametrize(
    "key",
    ["db/1_x.sql", "db/abc_x.up.sql", "db/1.up.sql", "db/1_x.UP.sql", "db/1_x.up.sql.sql", "db/-1_x.up.sql"],
)
def test_misnamed_file_is_refused_and_named(key: str) -> None:
    found = problems(key, "db/2_fine.up.sql")
    assert len(found) == 1
    assert found[0].startswith(key)
    assert "<version>_<description>.up.sql" in found[0]


def test_duplicate_versions_are_refused_even_with_different_zero_padding() -> None:
    found = problems("db/001_a.up.sql", "db/1_b.up.sql")
    assert found == ["db: version 1 is used by several files (db/001_a.up.sql, db/1_b.up.sql)"]


def test_down_file_without_up_file_is_refused() -> None:
    assert problems("db/5_gone.down.sql") == ["db/5_gone.down.sql: down file without an up file for version 5"]


@pytest.mark.parametrize("folder", ["Robert'); DROP TABLE x;--", "ProjectDB", "1db", "a" * 64, "my-db"])
def test_folder_that_is_not_a_database_name_is_refused(folder: str) -> None:
    found = problems(f"{folder}/1_x.up.sql")
    assert "is not a valid database name" in found[0]
    assert found[0].startswith(f"{folder}/1_x.up.sql")


def test_sql_outside_a_database_folder_is_refused() -> None:
    found = problems("1_x.up.sql", "db/nested/2_y.up.sql")
    assert all("must sit directly in a database folder" in p for p in found)
    assert len(found) == 2


def test_every_problem_is_listed_at_once_and_the_message_says_nothing_was_applied() -> None:
    with pytest.raises(LayoutError) as caught:
        layout("db/x.sql", "db/y.sql", "db/1_ok.up.sql")
    assert len(caught.value.details["problems"]) == 2
    assert "nothing was applied" in str(caught.value)
