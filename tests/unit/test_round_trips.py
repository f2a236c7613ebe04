"""How prepared files are grouped into round trips: one set of bounds for both ways of running them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from dbmigrate.apply import Prepared
from dbmigrate.history import Ledger
from dbmigrate.model import MigrationRef
from dbmigrate.sqlscript import analyze
from dbmigrate.together import MAX_TOGETHER, MAX_TOGETHER_BYTES, changes_session, round_trips, travels_alone

PLAIN = "CREATE TABLE t (id int);\n"
SETS = "SET search_path = app;\nCREATE TABLE t (id int);\n"
AUTOCOMMIT = "CREATE INDEX CONCURRENTLY i ON t (id);\n"


def files(*texts: str, size: int | None = None) -> list[Prepared]:
    """One prepared file per text, version 1, 2, ...; ``size`` stands for the body's bytes."""
    prepared = []
    for version, text in enumerate(texts, start=1):
        key = f"db/{version}_x.up.sql"
        script = analyze(text, database="db", file=key)
        ref = MigrationRef("db", version, "x", key)
        prepared.append(Prepared(ref, key, script, cast(Ledger, None), len(text) if size is None else size))
    return prepared


def versions(chunks: list[list[Prepared]]) -> list[list[int]]:
    return [[file.ref.version for file in chunk] for chunk in chunks]


def test_a_round_trip_holds_at_most_max_together_files() -> None:
    chunks = list(round_trips(files(*[PLAIN] * (2 * MAX_TOGETHER + 50)), alone=travels_alone))
    assert [len(chunk) for chunk in chunks] == [MAX_TOGETHER, MAX_TOGETHER, 50]


def test_a_round_trip_holds_at_most_max_together_bytes_and_a_bigger_file_goes_alone() -> None:
    third = MAX_TOGETHER_BYTES // 3
    assert versions(list(round_trips(files(*[PLAIN] * 7, size=third)))) == [[1, 2, 3], [4, 5, 6], [7]]
    assert versions(list(round_trips(files(*[PLAIN] * 3, size=MAX_TOGETHER_BYTES + 1)))) == [[1], [2], [3]]


def test_each_in_its_own_transaction_a_file_that_does_not_travel_together_has_a_round_trip_to_itself() -> None:
    chunks = list(round_trips(files(PLAIN, PLAIN, SETS, PLAIN, AUTOCOMMIT, PLAIN), alone=travels_alone))
    assert versions(chunks) == [[1, 2], [3], [4], [5], [6]]


def test_all_in_one_transaction_a_file_that_changes_its_session_ends_its_round_trip() -> None:
    chunks = list(round_trips(files(PLAIN, PLAIN, SETS, PLAIN, SETS, SETS), last=changes_session))
    assert versions(chunks) == [[1, 2, 3], [4, 5], [6]]


def test_files_are_taken_one_at_a_time_so_a_round_trip_is_known_once_the_file_after_it_is_seen() -> None:
    taken: list[int] = []

    def one_by_one() -> Iterator[Prepared]:
        for file in files(PLAIN, PLAIN, SETS, PLAIN):
            taken.append(file.ref.version)
            yield file

    first = next(round_trips(one_by_one(), alone=travels_alone))
    assert versions([first]) == [[1, 2]] and taken == [1, 2, 3], "file 3 (alone) ends it; file 4 is not read"
