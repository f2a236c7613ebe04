"""The bodies a warm function keeps: found only under the ETag S3 gave them, bounded, least recently used out first."""

from __future__ import annotations

import pytest

from dbmigrate.s3source import BodyCache


def test_a_body_is_found_only_under_its_bucket_key_and_etag() -> None:
    bodies = BodyCache()
    bodies.put("b", "app/1_a.up.sql", "e1", b"CREATE TABLE a ();")
    assert bodies.get("b", "app/1_a.up.sql", "e1") == b"CREATE TABLE a ();"
    assert bodies.get("b", "app/1_a.up.sql", "e2") is None, "written again: another ETag"
    assert bodies.get("other", "app/1_a.up.sql", "e1") is None
    assert bodies.get("b", "app/1_a.up.sql", None) is None, "a listing without ETags finds nothing"


@pytest.mark.parametrize(("etag", "size"), [(None, 10), ("e1", 101)])
def test_a_body_without_etag_or_over_the_limit_is_not_kept(etag: str | None, size: int) -> None:
    bodies = BodyCache(max_bytes=1000, max_body=100)
    bodies.put("b", "k", etag, b"x" * size)
    assert bodies.get("b", "k", etag or "e1") is None


def test_past_its_bound_the_least_recently_used_bodies_go_first() -> None:
    bodies = BodyCache(max_bytes=30, max_body=10)
    for name in ("a", "b", "c"):
        bodies.put("b", name, "e", name.encode() * 10)
    assert bodies.get("b", "a", "e") is not None  # a is used again: b is now the oldest
    bodies.put("b", "d", "e", b"d" * 10)
    assert [bodies.get("b", name, "e") is not None for name in "abcd"] == [True, False, True, True]
