"""Bundles: the migration files packed into a few S3 objects, so that a run reading many reads a few.

A deploy uploads each file as its own object (``<prefix><database>/<file>``): that object is
what a run applies. Beside them it uploads the same bodies packed in order into parts
(``part_key``) and, once those uploads are done, an index (``INDEX_KEY``). The index names
each file's object by the ETag and the SHA-256 checksum S3 reported for it (Terraform's
``etag`` and ``checksum_sha256`` of the ``aws_s3_object``, read back together in one
HeadObject) and says where its body sits in which part.

A run that reads many files reads the index and the byte ranges of the parts it needs
(``wanted``, ``unpack``), and takes a body from a part only when both hold:
  - the run's listing gives the file's object the ETag the index names, so the object was
    not written since Terraform read its checksum;
  - the body's own SHA-256 is that checksum, so it is byte for byte what S3 holds.
Any other file (one written out of band, one the index does not name, one whose part was
replaced) is read from its own object. The bundle saves requests and decides nothing.

Keys under ``.dbmigrate/`` are no migration files: the layout ignores names with a part
that starts with a dot (``model.parse_layout``), and the upload notification only sends
``.sql`` keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "FOLDER",
    "FORMAT",
    "INDEX_KEY",
    "PART_BYTES",
    "Entry",
    "Index",
    "Part",
    "Placed",
    "index_text",
    "pack",
    "part_key",
    "s3_checksum",
    "span",
    "unpack",
]

FORMAT = "dbmigrate-bundle/1"
FOLDER = ".dbmigrate/bundle/"
"""Where the bundle's objects sit, relative to the migrations prefix."""
INDEX_KEY = f"{FOLDER}index.jsonl"
PART_BYTES = 8 * 1024 * 1024
"""A part's size, at most (a file bigger than that has a part to itself)."""


def part_key(folder: str, number: int) -> str:
    """A folder's part ``number``, relative to the migrations prefix: ``.dbmigrate/bundle/app/part-0003``."""
    return f"{FOLDER}{folder}/part-{number:04d}"


def s3_checksum(body: bytes) -> str:
    """SHA-256 as S3 reports it for an object uploaded with that checksum: base64 of the digest."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


@dataclass(frozen=True)
class Part:
    """One part: its key (``part_key``) and, as the index has it, its ETag (or its body, when packed)."""

    key: str
    etag: str = ""
    body: bytes = b""


@dataclass(frozen=True)
class Placed:
    """Where one file's body sits: part ``part`` (its number in the index), ``length`` bytes from ``offset``."""

    file: str
    part: int
    offset: int
    length: int


@dataclass(frozen=True)
class Entry:
    """One file the index names: the object's ETag and checksum as S3 reported them, and its place."""

    etag: str
    checksum: str
    place: Placed


def pack(bodies: Sequence[tuple[str, bytes]], part_bytes: int = PART_BYTES) -> tuple[list[Part], list[Placed]]:
    """``(file, body)`` in order, packed into parts of at most ``part_bytes``: the parts, and each file's place.

    Each database folder (``<database>/<file>``) has parts of its own, named for it: a file
    added to one folder changes that folder's parts only, and a run of one database reads
    only those.
    """
    parts: list[tuple[str, bytearray]] = []
    placed: list[Placed] = []
    for file, body in bodies:
        folder = file.split("/", 1)[0]
        same = bool(parts) and parts[-1][0] == folder
        if not same or (parts[-1][1] and len(parts[-1][1]) + len(body) > part_bytes):
            parts.append((folder, bytearray()))
        placed.append(Placed(file, len(parts) - 1, len(parts[-1][1]), len(body)))
        parts[-1][1].extend(body)
    numbers: dict[str, int] = {}
    named = []
    for folder, collected in parts:
        numbers[folder] = numbers.get(folder, -1) + 1
        named.append(Part(part_key(folder, numbers[folder]), body=bytes(collected)))
    return named, placed


def index_text(
    placed: Sequence[Placed],
    parts: Sequence[Part],
    etags: Mapping[str, str],
    checksums: Mapping[str, str],
) -> str:
    """The index: a header line, a line per part (its key and ETag), a line per file (its object's ETag and checksum).

    One JSON object per line: a file added or changed adds or changes its own line. The
    values may be Terraform references, resolved when the objects they name are uploaded.
    """
    lines: list[dict[str, object]] = [{"format": FORMAT, "parts": len(parts), "files": len(placed)}]
    lines += [{"part": number, "key": part.key, "etag": part.etag} for number, part in enumerate(parts)]
    for item in placed:
        lines.append(
            {
                "file": item.file,
                "etag": etags[item.file],
                "sha256": checksums[item.file],
                "part": item.part,
                "offset": item.offset,
                "length": item.length,
            }
        )
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


@dataclass(frozen=True)
class Index:
    """A parsed index: each part (by its number) with its key and ETag, and each file's entry."""

    parts: Mapping[int, Part]
    files: Mapping[str, Entry]

    @classmethod
    def parse(cls, text: bytes) -> Index:
        """The index ``index_text`` wrote; ValueError saying what is wrong with any other text."""
        try:
            lines = [json.loads(line) for line in text.decode().splitlines() if line.strip()]
            header, rest = lines[0], lines[1:]
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ValueError(f"its first line is not a {FORMAT} header")
            parts = {
                int(line["part"]): Part(str(line["key"]), str(line["etag"])) for line in rest if "file" not in line
            }
            files = {
                str(line["file"]): Entry(
                    str(line["etag"]),
                    str(line["sha256"]),
                    Placed(str(line["file"]), int(line["part"]), int(line["offset"]), int(line["length"])),
                )
                for line in rest
                if "file" in line
            }
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:  # JSON and UTF-8 errors too
            raise ValueError(f"it is not a {FORMAT} index ({type(exc).__name__}: {exc})") from exc
        if len(parts) != header.get("parts") or len(files) != header.get("files"):
            raise ValueError(f"it names {len(parts)} parts and {len(files)} files, its header {header}")
        for entry in files.values():
            if entry.place.part not in parts or entry.place.offset < 0 or entry.place.length < 0:
                raise ValueError(f"{entry.place.file} is placed outside the parts it names: {entry.place}")
        return cls(parts, files)

    def wanted(self, files: Sequence[str], etags: Mapping[str, str | None], max_bytes: int) -> dict[int, list[Placed]]:
        """The places of ``files`` whose object and part still have the ETags the index names, by part.

        ``etags``: what the run's listing gave, by key (files and parts). In the order of
        ``files``, up to ``max_bytes`` of bodies in all.
        """
        found: dict[int, list[Placed]] = {}
        total = 0
        for file in files:
            entry = self.files.get(file)
            if entry is None or not entry.etag or etags.get(file) != entry.etag:
                continue
            part = self.parts.get(entry.place.part)
            if part is None or not part.etag or etags.get(part.key) != part.etag:
                continue
            if total + entry.place.length > max_bytes:
                break
            total += entry.place.length
            found.setdefault(entry.place.part, []).append(entry.place)
        return found

    def checksum(self, file: str) -> str:
        return self.files[file].checksum


def span(places: Sequence[Placed]) -> tuple[int, int] | None:
    """The byte range of one part that holds ``places``: first byte and last byte, inclusive (None: no bytes)."""
    sized = [place for place in places if place.length]
    if not sized:
        return None
    return min(p.offset for p in sized), max(p.offset + p.length for p in sized) - 1


def unpack(index: Index, places: Sequence[Placed], first: int, data: bytes) -> dict[str, bytes]:
    """The bodies of ``places`` in ``data`` (a part's bytes from ``first`` on) whose SHA-256 is their object's."""
    bodies = {}
    for place in places:
        body = data[place.offset - first : place.offset - first + place.length]
        if len(body) == place.length and s3_checksum(body) == index.checksum(place.file):
            bodies[place.file] = body
    return bodies
