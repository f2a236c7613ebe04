"""The bundle's format (``dbmigrate.bundle``): packing, the index, and which bodies a run may take from it."""

from __future__ import annotations

import json

import pytest

from dbmigrate import bundle
from dbmigrate.bundle import Index, Part, Placed

BODIES = [(f"app/{n}_step.up.sql", f"CREATE TABLE t{n} ();\n".encode() * n) for n in range(1, 30)]


def index_of(bodies: list[tuple[str, bytes]], part_bytes: int = bundle.PART_BYTES) -> tuple[list[bytes], Index]:
    """The parts' bodies and the parsed index of ``bodies``: each object's ETag ``etag-<file>`` and its real
    checksum, each part's ETag ``part-etag-<n>``."""
    parts, placed = bundle.pack(bodies, part_bytes)
    text = bundle.index_text(
        placed,
        [Part(part.key, f"part-etag-{n}") for n, part in enumerate(parts)],
        {file: f"etag-{file}" for file, _ in bodies},
        {file: bundle.s3_checksum(body) for file, body in bodies},
    )
    return [part.body for part in parts], Index.parse(text.encode())


def listing(bodies: list[tuple[str, bytes]], index: Index) -> dict[str, str | None]:
    """What a listing gives when nothing was written since the index."""
    etags: dict[str, str | None] = {file: f"etag-{file}" for file, _ in bodies}
    return etags | {part.key: part.etag for part in index.parts.values()}


@pytest.mark.parametrize("part_bytes", [1, 100, 1000, bundle.PART_BYTES])
def test_packing_keeps_order_and_bytes_and_parts_within_their_size(part_bytes: int) -> None:
    packed, placed = bundle.pack(BODIES, part_bytes)
    parts = [part.body for part in packed]
    assert [part.key for part in packed] == [bundle.part_key("app", n) for n in range(len(packed))]
    assert [place.file for place in placed] == [file for file, _ in BODIES]
    for place, (_, body) in zip(placed, BODIES, strict=True):
        assert parts[place.part][place.offset : place.offset + place.length] == body
    for number, part in enumerate(parts):
        inside = [place for place in placed if place.part == number]
        assert len(part) <= part_bytes or len(inside) == 1, "only a file bigger than a part has one to itself"
        assert sum(place.length for place in inside) == len(part)
    expected = {1: len(BODIES), bundle.PART_BYTES: 1}
    if part_bytes in expected:
        assert len(parts) == expected[part_bytes]


def test_each_database_folder_has_parts_of_its_own() -> None:
    bodies = [("app/1_a.up.sql", b"A1"), ("app/2_b.up.sql", b"A2"), ("billing/1_a.up.sql", b"B1")]
    bodies += [("postgres/1_db.up.sql", b""), ("zeta/1_a.up.sql", b"Z1")]
    parts, placed = bundle.pack(bodies, part_bytes=3)
    assert [(part.key, part.body) for part in parts] == [
        (bundle.part_key("app", 0), b"A1"),
        (bundle.part_key("app", 1), b"A2"),
        (bundle.part_key("billing", 0), b"B1"),
        (bundle.part_key("postgres", 0), b""),
        (bundle.part_key("zeta", 0), b"Z1"),
    ]
    assert [place.part for place in placed] == [0, 1, 2, 3, 4]
    more, _ = bundle.pack([*bodies[:2], ("app/3_c.up.sql", b"A3"), *bodies[2:]], part_bytes=3)
    assert more[3:] == parts[2:], "a new part of one folder leaves the other folders' parts (and keys) as they were"


def test_an_index_reads_back_what_was_written() -> None:
    parts, index = index_of(BODIES, part_bytes=300)
    assert len(parts) > 1
    assert {n: part.etag for n, part in index.parts.items()} == {n: f"part-etag-{n}" for n in range(len(parts))}
    assert set(index.files) == {file for file, _ in BODIES}
    _, placed = bundle.pack(BODIES, 300)
    assert [index.files[place.file].place for place in placed] == placed


def test_every_file_unchanged_is_taken_from_its_part() -> None:
    parts, index = index_of(BODIES, part_bytes=300)
    wanted = index.wanted([file for file, _ in BODIES], listing(BODIES, index), max_bytes=1 << 20)
    taken: dict[str, bytes] = {}
    for number, places in wanted.items():
        span = bundle.span(places)
        assert span is not None
        first, last = span
        taken |= bundle.unpack(index, places, first, parts[number][first : last + 1])
    assert taken == dict(BODIES)


def test_empty_files_need_no_bytes_of_their_part() -> None:
    bodies = [("app/1_a.up.sql", b""), ("app/2_b.up.sql", b"SELECT 1;\n"), ("app/3_c.up.sql", b"")]
    _, index = index_of(bodies)
    wanted = index.wanted([file for file, _ in bodies], listing(bodies, index), max_bytes=1 << 20)
    assert bundle.span(wanted[0]) == (0, len(b"SELECT 1;\n") - 1)
    empty = [place for place in wanted[0] if not place.length]
    assert bundle.span(empty) is None
    assert bundle.unpack(index, empty, 0, b"") == {"app/1_a.up.sql": b"", "app/3_c.up.sql": b""}


@pytest.mark.parametrize(
    "change",
    [
        "the object was written again (another ETag)",
        "the listing does not have the object",
        "the index does not name the file",
        "its part was replaced",
        "the index has no ETag for it",
    ],
)
def test_a_file_is_not_taken_when_its_object_or_part_is_not_the_one_indexed(change: str) -> None:
    bodies = BODIES[:5]
    _, index = index_of(bodies)
    etags = listing(bodies, index)
    file = bodies[2][0]
    if change.startswith("the object was"):
        etags[file] = "another"
    elif change.startswith("the listing"):
        del etags[file]
    elif change.startswith("the index does not"):
        index = Index(index.parts, {name: entry for name, entry in index.files.items() if name != file})
    elif change.startswith("its part"):
        etags[bundle.part_key("app", 0)] = "another"
    else:
        entry = index.files[file]
        index = Index(index.parts, {**index.files, file: bundle.Entry("", entry.checksum, entry.place)})
    wanted = index.wanted([name for name, _ in bodies], etags, max_bytes=1 << 20)
    found = {place.file for places in wanted.values() for place in places}
    if change.startswith("its part"):
        assert found == set()
    else:
        assert found == {name for name, _ in bodies} - {file}


def test_what_is_taken_stays_within_the_byte_budget_in_the_order_asked() -> None:
    _, index = index_of(BODIES)
    sizes = [len(body) for _, body in BODIES]
    budget = sum(sizes[:10]) + sizes[10] // 2
    wanted = index.wanted([file for file, _ in BODIES], listing(BODIES, index), max_bytes=budget)
    assert [place.file for place in wanted[0]] == [file for file, _ in BODIES[:10]]


@pytest.mark.parametrize(
    "checksum",
    ["", "a checksum of other content", "CRC32 of it"],
    ids=["written without a checksum", "written with other content", "another algorithm"],
)
def test_a_body_whose_checksum_is_not_its_objects_is_not_taken(checksum: str) -> None:
    bodies = BODIES[:3]
    parts, placed = bundle.pack(bodies)
    checksums = {file: bundle.s3_checksum(body) for file, body in bodies}
    checksums[bodies[1][0]] = {"": "", "CRC32 of it": "NhCmhg=="}.get(checksum, bundle.s3_checksum(b"other"))
    text = bundle.index_text(placed, [Part(parts[0].key, "p")], {file: "e" for file, _ in bodies}, checksums)
    index = Index.parse(text.encode())
    assert set(bundle.unpack(index, placed, 0, parts[0].body)) == {bodies[0][0], bodies[2][0]}


def test_a_range_cut_short_takes_only_the_bodies_it_holds_whole() -> None:
    bodies = BODIES[:4]
    parts, index = index_of(bodies)
    _, placed = bundle.pack(bodies)
    short = parts[0][: placed[2].offset + 3]
    assert set(bundle.unpack(index, placed, 0, short)) == {bodies[0][0], bodies[1][0]}


def good_text() -> str:
    parts, placed = bundle.pack(BODIES[:3])
    etags, checksums = {f: "e" for f, _ in BODIES[:3]}, {f: "c" for f, _ in BODIES[:3]}
    return bundle.index_text(placed, [Part(parts[0].key, "p")], etags, checksums)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b"", "IndexError"),
        (b"not json\n", "JSONDecodeError"),
        (b'{"format": "another/2"}\n', "header"),
        (b"[1, 2]\n", "header"),
        ("\n".join(good_text().splitlines()[:-1]).encode(), "its header"),  # cut short: a file's line lost
        (good_text().replace('"length"', '"size"').encode(), "KeyError"),
        (good_text().replace('"offset":0', '"offset":"zero"').encode(), "ValueError"),
        (b"\xff\xfe", "UnicodeDecodeError"),
        (b'{"format": "dbmigrate-bundle/1", "parts": 0, "files": 0}\n"a string"\n', "TypeError"),
        (good_text().replace('"part":0,"offset"', '"part":7,"offset"').encode(), "outside the parts"),
        (good_text().replace('"offset":0', '"offset":-1').encode(), "outside the parts"),
        (good_text().replace('"length":20', '"length":-20').encode(), "outside the parts"),
    ],
    ids=["empty", "not JSON", "another format", "not an object", "cut short", "a field missing", "a bad number",
         "not UTF-8", "a line not an object", "a part it does not name", "before its part", "a negative length"],
)  # fmt: skip
def test_an_index_that_is_not_one_is_refused_saying_why(text: bytes, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Index.parse(text)


def test_the_index_is_a_line_per_part_and_per_file() -> None:
    lines = good_text().splitlines()
    assert json.loads(lines[0]) == {"format": bundle.FORMAT, "parts": 1, "files": 3}
    assert json.loads(lines[1]) == {"part": 0, "key": ".dbmigrate/bundle/app/part-0000", "etag": "p"}
    assert [json.loads(line)["file"] for line in lines[2:]] == [file for file, _ in BODIES[:3]]
    assert Placed(BODIES[0][0], 0, 0, len(BODIES[0][1])) == Index.parse(good_text().encode()).files[BODIES[0][0]].place
