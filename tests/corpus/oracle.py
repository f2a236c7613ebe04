"""The reference applier: a migration set applied the way a human with psql would.

``postgres/`` first, then every other database folder in name order; in each, the
``.up.sql`` files by integer version; one ``psql -X -v ON_ERROR_STOP=1 -f FILE`` per
file, so every statement autocommits and no session state outlives its file. What
this leaves on the server is what the engine must leave too.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from local.postgres import EmbeddedPostgres

__all__ = ["PsqlFailedError", "apply_with_psql", "ordered_files"]

ROOT_DATABASE = "postgres"
UP_FILE = re.compile(r"^(?P<version>[0-9]+)_[^/]*\.up\.sql$")


class PsqlFailedError(AssertionError):
    """psql refused a file: the corpus (or the hand-written case) is not valid SQL."""


def ordered_files(root: Path) -> list[tuple[str, Path]]:
    """Every up file as (database, path) in the order psql applies them."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders.sort(key=lambda p: (p.name != ROOT_DATABASE, p.name))
    ordered: list[tuple[str, Path]] = []
    for folder in folders:
        files = [(int(m["version"]), p) for p in folder.iterdir() if (m := UP_FILE.match(p.name))]
        ordered += [(folder.name, path) for _, path in sorted(files)]
    return ordered


def apply_with_psql(server: EmbeddedPostgres, root: Path) -> int:
    """Apply every up file under ``root`` with psql, one process per file; return the file count.

    Raises PsqlFailedError naming the file and quoting psql's message when one fails.
    """
    env = {**os.environ, "PGPASSWORD": server.password, "PGCLIENTENCODING": "UTF8", "PGOPTIONS": ""}
    env.pop("PGSERVICE", None)
    files = ordered_files(root)
    for database, path in files:
        command = [
            str(server.client_bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            "-d",
            database,
            "-f",
            str(path),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PsqlFailedError(
                f"psql failed on {path.relative_to(root)} (exit {result.returncode}):\n{result.stderr.strip()}"
            )
    return len(files)
