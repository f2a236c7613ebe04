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


@pytest.mark.parametrize(
    ("key", "fixed"),
    [
        ("db/1_x.UP.SQL", "1_x.up.sql"),
        ("db/1_x.Up.sql", "1_x.up.sql"),
        ("db/1_x.up.SQL", "1_x.up.sql"),
        ("db/1_x.DOWN.Sql", "1_x.down.sql"),
    ],
)
def test_a_suffix_in_another_case_is_refused_with_the_lower_case_name(key: str, fixed: str) -> None:
    found = problems(key, "db/1_x.up.sql" if "DOWN" in key else "db/2_fine.up.sql")
    assert found == [
        f"{key}: file name must be <version>_<description>.up.sql or .down.sql, with digits for the "
        f"version (e.g. 202401010100_create_users.up.sql); the suffix must be lower-case ({fixed})"
    ]


@pytest.mark.parametrize("key", ["db/1_x.up.sql ", "db/ 1_x.up.sql", "db/1_x.up.sql\t", "db/1_x.down.sql  "])
def test_a_name_with_stray_spaces_is_refused_not_ignored(key: str) -> None:
    found = problems(key, "db/1_x.up.sql" if "down" in key else "db/2_fine.up.sql")
    assert len(found) == 1
    assert found[0].startswith(f"{key}: ")
    assert found[0].endswith("this one has spaces at its start or end")


@pytest.mark.parametrize("key", ["db/1_x.up", "db/1_x.down", "db/1_x.up.sql.bak", "db/20240101_x.UP.txt"])
def test_a_migration_name_without_the_sql_suffix_is_refused(key: str) -> None:
    found = problems(key, "db/2_fine.up.sql")
    assert len(found) == 1
    assert found[0].startswith(f"{key}: file name must be")


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("db/202401010000_x.up.sql/", "db/202401010000_x.up.sql"),
        ("db/202401010000_x.up.sql/notes.txt", "db/202401010000_x.up.sql"),
        ("db/3_y.UP.SQL/", "db/3_y.UP.SQL"),
        ("1_x.up.sql/", "1_x.up.sql"),
        ("db/4_z.down.sql/inner.sql", "db/4_z.down.sql"),
    ],
)
def test_a_folder_named_like_a_migration_file_is_refused(key: str, folder: str) -> None:
    found = problems(key, "db/2_fine.up.sql")
    assert found == [
        f"{folder}/: a folder named like a migration file; migrations are files "
        "(<database>/202401010100_create_users.up.sql)"
    ]


def test_other_folders_are_not_migrations_and_are_ignored() -> None:
    assert [r.key for r in layout("db/", "db/docs/", "db/docs/notes.txt", "db/1_a.up.sql")] == ["db/1_a.up.sql"]


def test_a_version_of_forty_digits_fits_the_history_and_leading_zeros_do_not_count() -> None:
    refs = layout(f"db/{'9' * 40}_widest.up.sql", f"db/000{'1' * 40}_padded.up.sql")
    assert [len(str(r.version)) for r in refs] == [40, 40]


@pytest.mark.parametrize("digits", [41, 60, 400])
def test_a_version_wider_than_the_history_column_is_a_layout_error(digits: int) -> None:
    key = f"db/{'1' * digits}_too_wide.up.sql"
    assert problems(key, "db/2_fine.up.sql") == [f"{key}: version has {digits} digits; the history keeps at most 40"]
