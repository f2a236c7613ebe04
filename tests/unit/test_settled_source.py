"""SettledSource: a listing is used only once two listings a settle time apart agree."""

from __future__ import annotations

import pytest

from dbmigrate.errors import SourceError
from dbmigrate.model import MigrationRef
from settled import SettledSource


class Arriving:
    """A source whose files arrive one per listing until ``batch`` are there."""

    origin = "s3://bucket/"

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.listings = 0

    def list(self) -> list[MigrationRef]:
        self.listings += 1
        count = min(self.listings, self.batch)
        return [MigrationRef("db", v, "x", f"db/{v}_x.up.sql", etag=f"e{v}") for v in range(1, count + 1)]

    def read(self, key: str) -> bytes:
        return b""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_listing_is_repeated_until_it_stops_changing() -> None:
    clock, source = Clock(), Arriving(batch=3)
    settled = SettledSource(source, settle_s=2, max_wait_s=60, clock=clock, sleep=clock.sleep)
    assert [ref.version for ref in settled.list()] == [1, 2, 3]
    assert source.listings == 4
    assert clock.now == 6


def test_files_still_arriving_after_the_bound_are_an_error_saying_so() -> None:
    clock = Clock()
    settled = SettledSource(Arriving(batch=100), settle_s=2, max_wait_s=5, clock=clock, sleep=clock.sleep)
    with pytest.raises(SourceError, match="still changing after 5 s"):
        settled.list()


def test_no_settle_time_lists_once() -> None:
    source = Arriving(batch=3)
    assert len(SettledSource(source, settle_s=0, max_wait_s=60).list()) == 1
    assert source.listings == 1
