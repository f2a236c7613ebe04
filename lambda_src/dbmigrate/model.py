"""The layout of migrations and its validation, shared by every source.

``<database>/<version>_<description>.up.sql`` (and an optional ``.down.sql``), under
an optional prefix. The folder is a database name, the version is digits compared as
an integer (leading zeros ignored) of at most 40 digits, the history's numeric(40,0).
A file that looks like a migration but breaks the rules is an error that names it:
a ``.sql`` suffix in any case (``.UP.SQL``), a name with trailing spaces, ``.up``
without ``.sql``, a folder named like a migration file. Other files (notes, hidden
files) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ConfigError, LayoutError

__all__ = [
    "DATABASE_NAME",
    "ROOT_DATABASE",
    "Entry",
    "MigrationRef",
    "parse_layout",
    "validate_database_name",
]

ROOT_DATABASE = "postgres"
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
FILE_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<description>[\w.-]+)\.(?P<direction>up|down)\.sql$")
# What a person meant as a migration: <digits>_... .up / .down, in any case, with any tail.
LOOKS_LIKE_MIGRATION = re.compile(r"^\s*[0-9]+_.*\.(up|down)(\.|\s*$)", re.IGNORECASE)
EXAMPLE_NAME = "202401010100_create_users.up.sql"
DATABASE_NAME_RULE = "lower-case letters, digits and underscores, starting with a letter or underscore, at most 63"
MAX_VERSION_DIGITS = 40  # the history's version column is numeric(40, 0)


@dataclass(frozen=True, order=True)
class MigrationRef:
    """One migration: its up file and, when present, its down file.

    ``key`` and ``down_key`` are what the source's ``read()`` takes (a path relative
    to the folder, or an S3 key). ``etag`` is the source's content tag when it has one
    (S3); a matching tag lets the engine skip reading an applied file again.
    """

    database: str
    version: int
    description: str
    key: str
    down_key: str | None = field(default=None, compare=False)
    etag: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The file name, e.g. ``202401010100_create_users.up.sql``."""
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Entry:
    """One object a source lists: its key below the source root, and its content tag."""

    key: str
    etag: str | None = None


def validate_database_name(name: str) -> str:
    """Return ``name`` if it is a valid database folder name, else raise ConfigError.

    For names that enter from outside (flags, payloads); the layout checks its folders itself.
    """
    if not DATABASE_NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid database name", hint=f"use {DATABASE_NAME_RULE}")
    return name


@dataclass(frozen=True)
class _File:
    """One listed file named as a migration."""

    database: str
    version: int
    description: str
    direction: str
    entry: Entry


def parse_layout(entries: Iterable[Entry], *, origin: str) -> list[MigrationRef]:
    """Validate every listed entry and return the migrations, sorted by database and version.

    Raises one LayoutError listing every problem (bad folder or file names, duplicate
    versions, down files without an up file) before anything is applied. ``origin``
    names the source in messages (a folder path or ``s3://bucket/prefix``).
    """
    files: list[_File] = []
    problems: list[str] = []
    for entry in entries:
        found = _classify(entry)
        if isinstance(found, str):
            problems.append(found)
        elif found is not None:
            files.append(found)
    refs = _pair(files, problems)
    if problems:
        problems.sort()
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise LayoutError(
            f"{len(problems)} problem(s) in the migrations at {origin}: {shown}.",
            hint="rename or move the files named; nothing was applied",
            problems=problems,
        )
    return sorted(refs)


def _classify(entry: Entry) -> _File | str | None:
    """The migration file an entry names, the problem with its name, or None for what the layout ignores."""
    parts = entry.key.split("/")
    if any(part.startswith(".") for part in parts):
        return None
    problem = _folder_problem(entry.key, parts)
    if problem or entry.key.endswith("/") or not _is_candidate(parts[-1]):
        return problem  # None: not meant as a migration
    if len(parts) != 2:
        return f"{entry.key}: a migration file must sit directly in a database folder (<database>/{EXAMPLE_NAME})"
    return _named(entry, *parts)


def _named(entry: Entry, database: str, name: str) -> _File | str:
    """The migration file ``<database>/<name>`` is, or what is wrong with its name."""
    if not DATABASE_NAME.match(database):
        return f"{entry.key}: folder {database!r} is not a valid database name ({DATABASE_NAME_RULE})"
    match = FILE_NAME.match(name)
    if not match:
        return f"{entry.key}: {_name_problem(name)}"
    digits = match["version"].lstrip("0")
    if len(digits) > MAX_VERSION_DIGITS:
        return f"{entry.key}: version has {len(digits)} digits; the history keeps at most {MAX_VERSION_DIGITS}"
    return _File(database, int(match["version"]), match["description"], match["direction"], entry)


def _pair(files: Iterable[_File], problems: list[str]) -> list[MigrationRef]:
    """Each version's up file with its optional down file; what does not pair up goes to ``problems``."""
    slots: dict[tuple[str, int], list[_File]] = {}
    for file in files:
        slots.setdefault((file.database, file.version), []).append(file)
    refs: list[MigrationRef] = []
    for (database, version), group in slots.items():
        ups = [file for file in group if file.direction == "up"]
        downs = [file.entry.key for file in group if file.direction == "down"]
        if len(ups) > 1:
            names = ", ".join(sorted(file.entry.key for file in ups))
            problems.append(f"{database}: version {version} is used by several files ({names})")
        elif not ups:
            problems.append(f"{downs[0]}: down file without an up file for version {version}")
        elif len(downs) > 1:
            problems.append(f"{database}: version {version} has several down files ({', '.join(sorted(downs))})")
        else:
            up = ups[0]
            down = downs[0] if downs else None
            refs.append(MigrationRef(database, version, up.description, up.entry.key, down, up.entry.etag))
    return refs


def _is_candidate(name: str) -> bool:
    """Whether a file is meant as a migration: any ``.sql`` (any case, stray spaces) or ``N_x.up``."""
    return name.strip().lower().endswith(".sql") or bool(LOOKS_LIKE_MIGRATION.match(name))


def _name_problem(name: str) -> str:
    rule = (
        "file name must be <version>_<description>.up.sql or .down.sql, "
        f"with digits for the version (e.g. {EXAMPLE_NAME})"
    )
    if name != name.strip():
        return f"{rule}; this one has spaces at its start or end"
    lowered = re.sub(r"\.(up|down)\.sql$", lambda m: m.group(0).lower(), name, flags=re.IGNORECASE)
    if lowered != name and FILE_NAME.match(lowered):
        return f"{rule}; the suffix must be lower-case ({lowered})"
    if LOOKS_LIKE_MIGRATION.match(name) and not name.lower().endswith(".sql"):
        return f"{rule}; this one does not end in .sql"
    return rule


def _folder_problem(key: str, parts: list[str]) -> str | None:
    """A folder (a key ending in ``/``, or a key's parent) named like a migration file."""
    for depth, folder in enumerate(parts[:-1]):
        if _is_candidate(folder):
            path = "/".join(parts[: depth + 1])
            return f"{path}/: a folder named like a migration file; migrations are files (<database>/{EXAMPLE_NAME})"
    return None
