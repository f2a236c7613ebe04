"""Reading S3 ahead (``dbmigrate.prefetch``): the same run as reading file by file, only sooner.

The function reads the bodies of the files it will apply on a few threads while earlier
files apply. These tests hold it to what a file-by-file read did: the order of
application, the error of a missing or unreachable object at that file (the files before
it applied and recorded), a bounded amount held in memory, no thread left reading, and a
no-op run that reads no body.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aws_clients
from dbmigrate import bundle, s3source
from dbmigrate.config import Settings
from dbmigrate.errors import SourceError
from dbmigrate.prefetch import THREAD_NAME, ReadAhead
from dbmigrate.runner import Runner
from dbmigrate.s3source import S3Source
from dbmigrate.sources import LocalSource
from environment import VARIABLES
from handler import handler
from local.aws import LocalAws
from local.lambda_runtime import Context
from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, write_files
from tests.integration.proxy import BlackHoleProxy

pytestmark = pytest.mark.any_pg_version("the order and timing of S3 reads; the SQL it applies is plain")

EVENTS = Path(__file__).resolve().parents[1] / "events"
BUCKET = "acme-dbmigrate-migrations"  # the bucket of the event fixtures
PREFIX = "migrations/"
ROOT = {"postgres/1_create_projectdb.up.sql": "CREATE DATABASE projectdb;\n"}


def numbered(count: int) -> dict[str, str]:
    """``count`` files of projectdb; each records its version in ``applied``, in the order they run."""
    files = {"projectdb/1_create_applied.up.sql": "CREATE TABLE applied (n serial PRIMARY KEY, version bigint);\n"}
    for version in range(2, count + 1):
        files[f"projectdb/{version}_record_{version}.up.sql"] = f"INSERT INTO applied (version) VALUES ({version});\n"
    return files


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


class S3Calls:
    """The S3 calls of the function's clients: counted, each GetObject delayed, and the most in flight at once."""

    def __init__(self, delay: Callable[[], float] = lambda: 0.0) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.read: list[str] = []  # the keys of every GetObject, in the order sent
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def client(self, make: Callable[[str], Any]) -> Callable[[str], Any]:
        def made(service: str) -> Any:
            client = make(service)
            client.meta.events.register(f"before-call.{service}", self._count)
            client.meta.events.register("before-parameter-build.s3.GetObject", self._key)
            client.meta.events.register("before-send.s3.GetObject", self._slow)
            return client

        return made

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls.update([model.name])

    def _key(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.read.append(params["Key"].removeprefix(PREFIX))

    def _slow(self, **_: Any) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay())
        with self._lock:
            self.in_flight -= 1


@pytest.fixture
def function(aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Calls]:
    """The function's environment (as test_handler.py sets it), its bucket, and its S3 calls watched."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    aws.bucket(BUCKET)
    for name, value in {
        "MIGRATIONS_BUCKET": BUCKET,
        "MIGRATIONS_PREFIX": PREFIX,
        "DATABASE_URL": pg.url(),
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    calls = S3Calls()
    monkeypatch.setattr(aws_clients, "new_client", calls.client(aws_clients.new_client))
    yield calls
    assert read_ahead_threads() == []


def test_a_first_deploy_applies_many_files_in_order_though_their_reads_finish_out_of_order(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    files = {**ROOT, **numbered(150)}
    aws.upload(BUCKET, files, PREFIX)
    function.delay = lambda: random.uniform(0, 0.03)
    result = handler({"action": "migrate"}, Context())
    assert [database["applied"] for database in result["databases"]] == [[1], list(range(1, 151))]
    order = query(pg, "projectdb", "SELECT version FROM applied ORDER BY n")
    assert [version for (version,) in order] == list(range(2, 151))
    assert applied_checksums(pg) == checksums_of(files)
    assert function.calls["GetObject"] == len(files)  # each file read once
    assert function.most_in_flight > 1  # read ahead, not file by file


def test_an_upload_event_waits_for_the_bucket_to_settle_and_then_reads_ahead(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOAD_SETTLE_S", "0.2")
    aws.upload(BUCKET, {**ROOT, **numbered(60)}, PREFIX)
    function.delay = lambda: 0.01
    with (EVENTS / "s3_put.json").open() as fixture:  # an upload to projectdb: root first, then projectdb
        result = handler(json.load(fixture), Context())
    assert [database["applied"] for database in result["databases"]] == [[1], list(range(1, 61))]
    assert function.most_in_flight > 1


def test_a_down_reads_its_down_files_ahead_and_runs_them_newest_first(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    undo = "INSERT INTO applied (version) VALUES ({});\n"
    downs = {f"projectdb/{v}_record_{v}.down.sql": undo.format(-v) for v in range(2, 41)}
    aws.upload(BUCKET, {**ROOT, **numbered(40), **downs}, PREFIX)
    monkeypatch.setenv("ALLOW_DOWN", "true")
    handler({"action": "migrate"}, Context())
    function.calls.clear()
    function.most_in_flight = 0
    function.delay = lambda: random.uniform(0, 0.02)
    result = handler({"action": "down", "database": "projectdb", "to": 1}, Context())
    assert result["databases"][0]["reverted"] == list(range(40, 1, -1))
    order = query(pg, "projectdb", "SELECT version FROM applied WHERE version < 0 ORDER BY n")
    assert [version for (version,) in order] == list(range(-40, -1))
    assert history(pg, "projectdb") == [(1, "applied")]
    assert function.calls["GetObject"] == len(downs)  # each down file read once, no up file
    assert function.most_in_flight > 1


def test_a_no_op_run_on_many_files_lists_once_and_reads_no_body(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    files = {**ROOT, **{f"projectdb/{v}_f{v}.up.sql": "SELECT 1;\n" for v in range(1, 1_500)}}
    aws.upload(BUCKET, files, PREFIX)
    handler({"action": "migrate"}, Context())
    function.calls.clear()
    result = handler({"action": "migrate"}, Context())
    assert [database["applied"] for database in result["databases"]] == [[], []]
    assert function.calls == Counter({"ListObjectsV2": 2})  # 1,500 keys: two pages of one listing


def test_a_file_missing_in_the_middle_fails_at_that_file_after_the_files_before_it(
    aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    aws.bucket(BUCKET)
    aws.upload(BUCKET, {**ROOT, **numbered(40)}, PREFIX)
    gone = "projectdb/20_record_20.up.sql"
    source = S3Source(BUCKET, PREFIX, aws_clients.aws_client("s3"))

    def delete_after_listing(event: dict[str, Any]) -> None:
        if event["event"] == "lock_acquired":
            aws.s3.delete_object(Bucket=BUCKET, Key=PREFIX + gone)

    with pytest.raises(SourceError) as caught:
        Runner(source, Settings(pg.url()), on_event=delete_after_listing).migrate()
    assert caught.value.file == gone
    with pytest.raises(SourceError) as plain:
        source.read(gone)
    assert str(caught.value) == str(plain.value)  # what reading file by file raised
    assert "does not exist (it was listed" in str(caught.value)
    assert history(pg, "projectdb") == [(version, "applied") for version in range(1, 20)]
    assert query(pg, "projectdb", "SELECT max(version) FROM applied") == [(19,)]
    assert read_ahead_threads() == []


def test_s3_that_stops_answering_after_the_listing_fails_with_the_gateway_hint_and_no_thread_left(
    aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.bucket(BUCKET)
    aws.upload(BUCKET, {**ROOT, **numbered(40)}, PREFIX)
    with BlackHoleProxy(aws.port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
        source = S3Source(BUCKET, PREFIX, aws_clients.aws_client("s3"))

        def stop_answering_after_listing(event: dict[str, Any]) -> None:
            if event["event"] == "lock_acquired":
                proxy.black_hole()

        runner = Runner(source, Settings(pg.url()), on_event=stop_answering_after_listing)
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            runner.migrate()
        elapsed = time.monotonic() - started
    assert caught.value.file == "postgres/1_create_projectdb.up.sql"
    assert caught.value.details["unreachable"] is True
    assert "S3 did not answer (ReadTimeoutError) after 2 attempts" in str(caught.value)
    assert "S3 gateway endpoint" in str(caught.value)
    assert elapsed < 15
    assert read_ahead_threads() == []
    assert query(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'projectdb'") == []


class HeldBodies(S3Source):
    """An S3 source that counts the bytes and files it returned that the run has not yet taken."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.bytes = self.files = self.most_bytes = self.most_files = self.fetched = 0
        self._lock = threading.Lock()

    def read(self, key: str) -> bytes:
        body = super().read(key)
        with self._lock:
            self.bytes, self.files, self.fetched = self.bytes + len(body), self.files + 1, self.fetched + 1
            self.most_bytes, self.most_files = max(self.most_bytes, self.bytes), max(self.most_files, self.files)
        return body

    def taken(self, body: bytes) -> None:
        with self._lock:
            self.bytes, self.files = self.bytes - len(body), self.files - 1


def read_slowly(source: HeldBodies, reads: ReadAhead, keys: list[str]) -> dict[str, bytes]:
    """Take each body in order, as a run applying slow files would."""
    bodies = {}
    for key in keys:
        bodies[key] = reads.read(key)
        source.taken(bodies[key])
        time.sleep(0.01)
    return bodies


def test_bodies_held_ahead_stay_within_the_byte_budget(aws: LocalAws) -> None:
    budget, body_size = 1024 * 1024, 200 * 1024
    files = {f"projectdb/{v}_f.up.sql": f"-- {v}\n".encode().ljust(body_size, b"x") for v in range(1, 31)}
    files["projectdb/15_f.up.sql"] = b"-- big\n".ljust(3 * budget // 2, b"y")  # alone over the budget
    aws.bucket(BUCKET)
    aws.upload(BUCKET, files, PREFIX)
    source = HeldBodies(BUCKET, PREFIX, aws_clients.aws_client("s3"))
    keys = [ref.key for ref in source.list()]
    with ReadAhead(source, max_bytes=budget) as reads:
        reads.ahead(keys)
        bodies = read_slowly(source, reads, keys)
    assert bodies == files
    assert source.most_bytes <= 3 * budget // 2  # the budget, or the one file bigger than it
    assert source.most_files >= 4  # and yet read ahead
    assert read_ahead_threads() == []


def test_files_held_ahead_stay_within_the_count(aws: LocalAws) -> None:
    files = {f"projectdb/{v}_f.up.sql": f"SELECT {v};\n" for v in range(1, 41)}
    aws.bucket(BUCKET)
    aws.upload(BUCKET, files, PREFIX)
    source = HeldBodies(BUCKET, PREFIX, aws_clients.aws_client("s3"))
    keys = [ref.key for ref in source.list()]
    with ReadAhead(source, max_files=3) as reads:
        reads.ahead(keys)
        assert read_slowly(source, reads, keys) == {key: body.encode() for key, body in files.items()}
    assert 2 <= source.most_files <= 3


def test_closing_early_drops_what_was_fetched_and_leaves_no_thread(aws: LocalAws) -> None:
    files = {f"projectdb/{v}_f.up.sql": f"SELECT {v};\n" for v in range(1, 200)}
    aws.bucket(BUCKET)
    aws.upload(BUCKET, files, PREFIX)
    source = HeldBodies(BUCKET, PREFIX, aws_clients.aws_client("s3"))
    keys = [ref.key for ref in source.list()]
    with ReadAhead(source, max_files=10) as reads:
        reads.ahead(keys)
        assert reads.read(keys[0]) == b"SELECT 1;\n"
    assert read_ahead_threads() == []
    assert source.fetched <= 11  # the one taken and at most 10 held: the rest was never fetched
    assert reads.read(keys[5]) == files[keys[5]].encode()  # after closing: a plain read


def test_a_local_folder_is_read_file_by_file(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    root = write_files(tmp_path / "migrations", {**ROOT, **numbered(20)})
    seen: list[int] = []

    def count_threads(event: dict[str, Any]) -> None:
        if event["event"] == "file_start":
            seen.append(len(read_ahead_threads()))

    Runner(LocalSource(root), Settings(pg.url()), on_event=count_threads).migrate()
    assert seen == [0] * 21


# -- the deploy's bundle (dbmigrate.bundle): many files in a few requests ------------------------
INDEX = bundle.INDEX_KEY
PART = bundle.part_key("projectdb", 0)  # each database folder has parts of its own


def applied_checksums(pg: EmbeddedPostgres) -> dict[str, str]:
    return dict(query(pg, "projectdb", "SELECT file, checksum FROM dbmigrate.history"))


def checksums_of(files: dict[str, str]) -> dict[str, str]:
    return {key: hashlib.sha256(body.encode()).hexdigest() for key, body in files.items() if "projectdb/" in key}


def reindex(aws: LocalAws, file: str, *, etag: str, checksum: str) -> None:
    """Rewrite the index's line of ``file``, as Terraform's next apply writes it after a refresh of that object."""
    key = PREFIX + INDEX
    lines = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    for number, line in enumerate(lines):
        entry = json.loads(line)
        if entry.get("file") == file:
            lines[number] = json.dumps({**entry, "etag": etag, "sha256": checksum})
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())


def test_a_first_deploy_from_the_bundle_reads_its_index_and_one_part_and_applies_in_order(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    files = {**ROOT, **numbered(150)}
    aws.upload(BUCKET, files, PREFIX, bundled=True)
    result = handler({"action": "migrate"}, Context())
    assert [database["applied"] for database in result["databases"]] == [[1], list(range(1, 151))]
    order = query(pg, "projectdb", "SELECT version FROM applied ORDER BY n")
    assert [version for (version,) in order] == list(range(2, 151))
    assert applied_checksums(pg) == checksums_of(files)
    # The root database's one file is too few for the bundle; projectdb's 150 come from it.
    assert function.read == [*ROOT, INDEX, PART]


def test_an_upload_event_waits_for_the_bucket_to_settle_and_then_reads_from_the_bundle(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOAD_SETTLE_S", "0.2")
    files = {**ROOT, **numbered(60)}
    aws.upload(BUCKET, files, PREFIX, bundled=True)
    with (EVENTS / "s3_put.json").open() as fixture:  # the settling source in front of the bucket
        result = handler(json.load(fixture), Context())
    assert [database["applied"] for database in result["databases"]] == [[1], list(range(1, 61))]
    assert applied_checksums(pg) == checksums_of(files)
    assert function.read == [*ROOT, INDEX, PART]


CHANGES = ["written out of band", "written out of band, the index refreshed", "added after the bundle"]


@pytest.mark.parametrize("change", CHANGES)
def test_a_file_not_as_the_bundle_has_it_is_read_from_its_own_object(
    change: str, function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    files = {**ROOT, **numbered(60)}
    file = "projectdb/30_record_30.up.sql"
    if change.startswith("added"):
        del files[file]
    aws.upload(BUCKET, files, PREFIX, bundled=True)
    body = "INSERT INTO applied (version) VALUES (-30);\n"
    put = aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + file, Body=body.encode())  # no SHA-256 checksum
    if change.endswith("refreshed"):  # the index names the new object, but with no checksum of its content
        reindex(aws, file, etag=put["ETag"].strip('"'), checksum="")
    result = handler({"action": "migrate"}, Context())
    assert result["databases"][1]["applied"] == list(range(1, 61))
    assert query(pg, "projectdb", "SELECT version FROM applied WHERE version IN (30, -30)") == [(-30,)]
    assert applied_checksums(pg) == checksums_of({**files, file: body})
    assert sorted(function.read) == sorted([*ROOT, INDEX, PART, file])


def replace_the_part(aws: LocalAws) -> None:
    part = aws.s3.get_object(Bucket=BUCKET, Key=PREFIX + PART)["Body"].read()
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + PART, Body=part + b"\n")


@pytest.mark.parametrize(
    "fault",
    [
        "the index is not one",
        "the index is gone after the listing",
        "the part is replaced after the listing",
        "the part was replaced before the listing",
    ],
)
def test_a_bundle_that_cannot_be_used_leaves_every_file_to_its_own_object(
    fault: str, aws: LocalAws, pg: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    aws.bucket(BUCKET)
    files = numbered(40)
    aws.upload(BUCKET, {**ROOT, **files}, PREFIX, bundled=True)
    if fault == "the index is not one":
        aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + INDEX, Body=b"<html>proxy error</html>")
    if fault.endswith("before the listing"):
        replace_the_part(aws)
    calls = S3Calls()
    source = S3Source(BUCKET, PREFIX, calls.client(aws_clients.aws_client)("s3"))

    def after_listing(event: dict[str, Any]) -> None:
        if event["event"] == "lock_acquired":  # the bucket was listed
            if fault == "the index is gone after the listing":
                aws.s3.delete_object(Bucket=BUCKET, Key=PREFIX + INDEX)
            elif fault.endswith("after the listing"):
                replace_the_part(aws)

    report = Runner(source, Settings(pg.url()), on_event=after_listing).migrate()
    assert report.databases[1].applied == list(range(1, 41))
    assert applied_checksums(pg) == checksums_of(files)
    assert sorted(key for key in calls.read if key in files) == sorted(files)  # each from its own object
    said = [record.getMessage() for record in caplog.records if record.name == "dbmigrate.s3source"]
    if fault.endswith("before the listing"):  # the listing shows it is not the index's: not even read
        assert PART not in calls.read
        assert said == []
        return
    (warning,) = said
    assert warning.startswith(
        f"the bundle at s3://{BUCKET}/{PREFIX}{INDEX} was not used, each file is read from its own object: "
    )
    assert REASONS[fault] in warning


REASONS = {
    "the index is not one": f"it is not a {bundle.FORMAT} index",
    "the index is gone after the listing": "NoSuchKey",
    "the part is replaced after the listing": "PreconditionFailed",
}


def test_a_few_files_to_read_are_read_from_their_own_objects_without_the_index(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres
) -> None:
    first = {**ROOT, **numbered(100)}
    aws.upload(BUCKET, first, PREFIX, bundled=True)
    handler({"action": "migrate"}, Context())
    more = {
        f"projectdb/{v}_record_{v}.up.sql": f"INSERT INTO applied (version) VALUES ({v});\n" for v in range(101, 111)
    }
    aws.upload(BUCKET, {**first, **more}, PREFIX, bundled=True)
    function.read.clear()
    result = handler({"action": "migrate"}, Context())
    assert result["databases"][1]["applied"] == list(range(101, 111))
    assert sorted(function.read) == sorted(more)  # ten: fewer than one read each costs, in parallel


def test_what_the_bundle_hands_over_stays_within_its_byte_budget(
    function: S3Calls, aws: LocalAws, pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**ROOT, **numbered(80)}
    aws.upload(BUCKET, files, PREFIX, bundled=True)
    in_order = [f"projectdb/{v}_{'create_applied' if v == 1 else f'record_{v}'}.up.sql" for v in range(1, 81)]
    monkeypatch.setattr(s3source, "GATHER_MAX_BYTES", sum(len(files[key].encode()) for key in in_order[:50]))
    handler({"action": "migrate"}, Context())
    assert applied_checksums(pg) == checksums_of(files)
    assert [key for key in function.read if key.startswith("projectdb/")] != []
    assert {key for key in function.read if key.startswith("projectdb/")} == set(in_order[50:])
