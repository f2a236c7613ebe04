"""The contract of a migration source, which the folder and the S3 bucket (on moto) both keep.

A new source joins by adding a Store for it to the ``store`` fixture.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest

from aws_clients import aws_client
from dbmigrate import s3source
from dbmigrate.errors import LayoutError, SourceError
from dbmigrate.model import MigrationRef
from dbmigrate.s3source import S3Source
from dbmigrate.sources import LocalSource, MigrationSource
from local.aws import LocalAws

BUCKET = "conformance-migrations"
PREFIX = "team/migrations/"


class Store(Protocol):
    """Puts files where one kind of source reads them, and builds that source."""

    def put(self, key: str, body: bytes) -> None: ...

    def remove(self, key: str) -> None: ...

    def source(self) -> MigrationSource: ...


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()

    def put(self, key: str, body: bytes) -> None:
        path = self.root / key
        if key.endswith("/"):  # a folder, as S3's console makes one (an empty key ending in /)
            path.mkdir(parents=True, exist_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def remove(self, key: str) -> None:
        (self.root / key).unlink()

    def source(self) -> MigrationSource:
        return LocalSource(self.root)


class BucketStore:
    """Objects under a prefix, beside objects of another prefix that must not be listed."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        aws.bucket(BUCKET)
        aws.upload(BUCKET, {"team/migrations-old/projectdb/1_old.up.sql": "SELECT 1;", "README.md": "# hi"})

    def put(self, key: str, body: bytes) -> None:
        self.aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=body)

    def remove(self, key: str) -> None:
        self.aws.s3.delete_object(Bucket=BUCKET, Key=PREFIX + key)

    def source(self) -> MigrationSource:
        # The default client: it reaches moto through AWS_ENDPOINT_URL, as a local replay does.
        return S3Source(BUCKET, PREFIX, aws_client("s3"))


class BundledBucketStore(BucketStore):
    """Objects put with their SHA-256 checksums, and the bundle of them a deploy writes when the source is made.

    Its source takes every file it lists from the bundle where it can (``gather``), as a
    run with many files to read does: what it reads must be what the objects hold.
    """

    def __init__(self, aws: LocalAws) -> None:
        super().__init__(aws)
        self.answers: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def put(self, key: str, body: bytes) -> None:
        answer = self.aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=body, ChecksumAlgorithm="SHA256")
        self.answers[key] = (body, dict(answer))

    def remove(self, key: str) -> None:
        super().remove(key)
        self.answers.pop(key, None)

    def source(self) -> MigrationSource:
        files = {key: answer for key, answer in self.answers.items() if not key.endswith("/")}
        self.aws.put_bundle(BUCKET, PREFIX, files)
        return GatheringSource(BUCKET, PREFIX, aws_client("s3"))


class GatheringSource(S3Source):
    """Every file listed is asked of the bundle right away (``GATHER_MIN`` is 1 for these tests)."""

    def list(self) -> list[MigrationRef]:
        refs = super().list()
        self.gather([key for ref in refs for key in (ref.key, ref.down_key) if key])
        return refs


@pytest.fixture(params=["folder", "s3", "s3 with bundle"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "folder":
        return FolderStore(tmp_path / "migrations")
    if request.param == "s3":
        return BucketStore(request.getfixturevalue("aws"))
    monkeypatch.setattr(s3source, "GATHER_MIN", 1)
    return BundledBucketStore(request.getfixturevalue("aws"))


def put_all(store: Store, files: dict[str, str | bytes]) -> None:
    for key, body in files.items():
        store.put(key, body.encode() if isinstance(body, str) else body)


def test_lists_every_migration_sorted_by_database_and_version_with_keys_relative_to_the_root(
    store: Store,
) -> None:
    put_all(
        store,
        {
            "projectdb/10_add_widgets.up.sql": "CREATE TABLE widgets ();",
            "projectdb/11_créer_les_tables.up.sql": "CREATE TABLE t ();",
            "projectdb/9_create_users.up.sql": "CREATE TABLE users ();",
            "projectdb/9_create_users.down.sql": "DROP TABLE users;",
            "postgres/202401010000_create_projectdb.up.sql": "CREATE DATABASE projectdb;",
            "postgres/00000000000000000000001_wide.up.sql": "",
        },
    )
    refs = store.source().list()
    assert [(ref.database, ref.version, ref.description, ref.key, ref.down_key) for ref in refs] == [
        ("postgres", 1, "wide", "postgres/00000000000000000000001_wide.up.sql", None),
        ("postgres", 202401010000, "create_projectdb", "postgres/202401010000_create_projectdb.up.sql", None),
        ("projectdb", 9, "create_users", "projectdb/9_create_users.up.sql", "projectdb/9_create_users.down.sql"),
        ("projectdb", 10, "add_widgets", "projectdb/10_add_widgets.up.sql", None),
        ("projectdb", 11, "créer_les_tables", "projectdb/11_créer_les_tables.up.sql", None),
    ]


def test_an_empty_source_lists_nothing(store: Store) -> None:
    assert store.source().list() == []


def test_files_that_are_not_migrations_are_ignored(store: Store) -> None:
    put_all(
        store,
        {
            "projectdb/1_a.up.sql": "SELECT 1;",
            "projectdb/README.md": "notes",
            "projectdb/.1_hidden.up.sql": "SELECT 2;",
            ".git/config.sql": "x",
        },
    )
    assert [ref.key for ref in store.source().list()] == ["projectdb/1_a.up.sql"]


def test_a_source_tag_when_given_follows_the_content(store: Store) -> None:
    put_all(store, {"projectdb/1_a.up.sql": "SELECT 1;", "projectdb/2_b.up.sql": "SELECT 1;"})
    first, second = store.source().list()
    put_all(store, {"projectdb/2_b.up.sql": "SELECT 2;"})
    _, changed = store.source().list()
    if first.etag is None:  # a folder has no content tags: the engine hashes the files
        assert (second.etag, changed.etag) == (None, None)
        return
    assert first.etag == second.etag == hashlib.md5(b"SELECT 1;").hexdigest()
    assert changed.etag == hashlib.md5(b"SELECT 2;").hexdigest()


def test_more_than_a_thousand_files_are_all_listed(store: Store) -> None:
    files = {f"bigdb/{version}_step.up.sql": f"SELECT {version};" for version in range(1, 1106)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: store.put(item[0], item[1].encode()), files.items()))
    refs = store.source().list()
    assert [ref.version for ref in refs] == list(range(1, 1106))


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("projectdb/add_widgets.up.sql", "file name must be <version>_<description>.up.sql"),
        ("projectdb/1-add_widgets.up.sql", "file name must be <version>_<description>.up.sql"),
        ("ProjectDB/1_add_widgets.up.sql", "folder 'ProjectDB' is not a valid database name"),
        ("1_add_widgets.up.sql", "a migration file must sit directly in a database folder"),
        ("projectdb/sub/1_add_widgets.up.sql", "a migration file must sit directly in a database folder"),
        ("projectdb/2_add_widgets.UP.SQL", "the suffix must be lower-case (2_add_widgets.up.sql)"),
        ("projectdb/2_add_widgets.Up.sql", "the suffix must be lower-case (2_add_widgets.up.sql)"),
        ("projectdb/2_add_widgets.up.sql ", "this one has spaces at its start or end"),
        ("projectdb/2_add_widgets.up", "this one does not end in .sql"),
        ("ProjectDB/1_add_widgets.UP.SQL", "folder 'ProjectDB' is not a valid database name"),
        ("README.SQL", "a migration file must sit directly in a database folder"),
        (f"projectdb/{'7' * 41}_wide.up.sql", "version has 41 digits; the history keeps at most 40"),
    ],
)
def test_a_misnamed_file_is_refused_by_its_key(store: Store, key: str, complaint: str) -> None:
    put_all(store, {"projectdb/1_fine.up.sql": "SELECT 1;", key: "SELECT 1;"})
    with pytest.raises(LayoutError) as caught:
        store.source().list()
    (problem,) = caught.value.details["problems"]
    assert problem.startswith(f"{key}: ")
    assert complaint in problem


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("projectdb/202401010000_x.up.sql/", "projectdb/202401010000_x.up.sql/"),
        ("projectdb/3_y.UP.SQL/", "projectdb/3_y.UP.SQL/"),
        ("projectdb/4_z.up.sql/body.sql", "projectdb/4_z.up.sql/"),
        ("5_root.up.sql/", "5_root.up.sql/"),
    ],
)
def test_a_folder_named_like_a_migration_file_is_refused(store: Store, key: str, folder: str) -> None:
    put_all(store, {"projectdb/1_fine.up.sql": "SELECT 1;", key: b"" if key.endswith("/") else "SELECT 1;"})
    with pytest.raises(LayoutError) as caught:
        store.source().list()
    assert f"{folder}: a folder named like a migration file" in str(caught.value)


def test_empty_folders_and_folders_of_notes_are_not_migrations(store: Store) -> None:
    put_all(store, {"projectdb/1_fine.up.sql": "SELECT 1;", "projectdb/docs/": b"", "notes/": b"", "emptydb/": b""})
    assert [ref.key for ref in store.source().list()] == ["projectdb/1_fine.up.sql"]


def test_duplicate_versions_are_refused_naming_both_files(store: Store) -> None:
    put_all(store, {"projectdb/1_a.up.sql": "SELECT 1;", "projectdb/01_b.up.sql": "SELECT 1;"})
    with pytest.raises(LayoutError, match=r"version 1 is used by several files \(projectdb/01_b.up.sql, projectdb/1_a"):
        store.source().list()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"CREATE TABLE t ();\r\nSELECT 'caf\xc3\xa9';\r\n",
        b"\xef\xbb\xbfSELECT 1;",
        b"SELECT '\xff\xfe not utf-8';",
        b"-- big\n" + b"SELECT 1;\n" * 200_000,
    ],
    ids=["empty", "crlf-utf8", "bom", "not-utf8", "2MB"],
)
def test_read_returns_the_exact_bytes(store: Store, body: bytes) -> None:
    store.put("projectdb/1_a.up.sql", body)
    source = store.source()
    (ref,) = source.list()
    assert source.read(ref.key) == body


def test_reading_a_file_that_is_gone_raises_a_source_error_naming_it(store: Store) -> None:
    put_all(store, {"projectdb/1_a.up.sql": "SELECT 1;"})
    source = store.source()
    ref: MigrationRef = source.list()[0]
    store.remove(ref.key)
    if isinstance(source, GatheringSource):  # it took the body from the bundle with the listing, as a run does
        assert source.read(ref.key) == b"SELECT 1;"
        return
    with pytest.raises(SourceError) as caught:
        source.read(ref.key)
    assert "projectdb/1_a.up.sql" in str(caught.value)
    assert caught.value.file == "projectdb/1_a.up.sql"


def test_the_origin_names_where_the_files_are(store: Store) -> None:
    origin = store.source().origin
    assert origin.endswith("migrations") or origin == f"s3://{BUCKET}/{PREFIX}"
