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

from .errors import LayoutError

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
    """Return ``name`` if it is a valid database folder name, else raise LayoutError."""
    if not DATABASE_NAME.match(name):
        raise LayoutError(
            f"{name!r} is not a valid database name",
            database=None,
            hint="use lower-case letters, digits and underscores, starting with a letter "
            "or underscore, at most 63 characters",
        )
    return name


def parse_layout(entries: Iterable[Entry], *, origin: str) -> list[MigrationRef]:
    """Validate every listed entry and return the migrations, sorted by database and version.

    Raises one LayoutError listing every problem (bad folder or file names, duplicate
    versions, down files without an up file) before anything is applied. ``origin``
    names the source in messages (a folder path or ``s3://bucket/prefix``).
    """
    problems: list[str] = []
    ups: dict[tuple[str, int], list[tuple[str, str, str | None]]] = {}
    downs: dict[tuple[str, int], list[str]] = {}
    for entry in entries:
        parts = entry.key.split("/")
        if any(part.startswith(".") for part in parts):
            continue
        folder_problem = _folder_problem(entry.key, parts)
        if folder_problem:
            problems.append(folder_problem)
            continue
        if entry.key.endswith("/") or not _is_candidate(parts[-1]):
            continue
        if len(parts) != 2:
            problems.append(
                f"{entry.key}: a migration file must sit directly in a database folder (<database>/{EXAMPLE_NAME})"
            )
            continue
        database, name = parts
        if not DATABASE_NAME.match(database):
            problems.append(
                f"{entry.key}: folder {database!r} is not a valid database name (lower-case "
                "letters, digits and underscores, starting with a letter or underscore, at most 63)"
            )
            continue
        match = FILE_NAME.match(name)
        if not match:
            problems.append(f"{entry.key}: {_name_problem(name)}")
            continue
        digits = match["version"].lstrip("0")
        if len(digits) > MAX_VERSION_DIGITS:
            problems.append(
                f"{entry.key}: version has {len(digits)} digits; the history keeps at most {MAX_VERSION_DIGITS}"
            )
            continue
        slot = (database, int(match["version"]))
        if match["direction"] == "up":
            ups.setdefault(slot, []).append((entry.key, match["description"], entry.etag))
        else:
            downs.setdefault(slot, []).append(entry.key)

    refs: list[MigrationRef] = []
    for (database, version), files in ups.items():
        down_files = downs.get((database, version), [])
        if len(files) > 1:
            names = ", ".join(sorted(key for key, _, _ in files))
            problems.append(f"{database}: version {version} is used by several files ({names})")
            continue
        if len(down_files) > 1:
            problems.append(f"{database}: version {version} has several down files ({', '.join(sorted(down_files))})")
            continue
        key, description, etag = files[0]
        refs.append(MigrationRef(database, version, description, key, down_files[0] if down_files else None, etag))
    for (database, version), down_files in downs.items():
        if (database, version) not in ups:
            problems.append(f"{down_files[0]}: down file without an up file for version {version}")

    if problems:
        problems.sort()
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise LayoutError(
            f"{len(problems)} problem(s) in the migrations at {origin}: {shown}.",
            hint="rename or move the files named; nothing was applied",
            problems=problems,
        )
    return sorted(refs)


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
