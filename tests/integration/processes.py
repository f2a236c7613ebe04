"""Real `dbmigrate` processes for fault tests: start one, wait until the server runs its statement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.postgres import EmbeddedPostgres
from tests.helpers import query


@dataclass
class Finished:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def start_cli(
    pg: EmbeddedPostgres, root: Path, *args: str, as_json: bool = True, url: str | None = None
) -> subprocess.Popen[str]:
    """``python -m dbmigrate up --json --dir root ...`` as its own process."""
    env = {**os.environ, "DATABASE_URL": url or pg.url()}
    return subprocess.Popen(
        [sys.executable, "-m", "dbmigrate", "up", *(["--json"] if as_json else []), "--dir", str(root), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> Finished:
    out, err = process.communicate(timeout=timeout)
    return Finished(process.returncode, out, err)


def run_cli(pg: EmbeddedPostgres, root: Path, *args: str) -> Finished:
    return finish(start_cli(pg, root, *args))


def wait_until_running(pg: EmbeddedPostgres, text: str, timeout: float = 30) -> int:
    """The pid of the run's backend once it executes a statement containing ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(
            pg,
            "postgres",
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'dbmigrate-run %%' "
            "AND state = 'active' AND strpos(query, %s) > 0",
            (text,),
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"no dbmigrate backend ran {text!r} within {timeout} s")


def backend_alive(pg: EmbeddedPostgres, pid: int) -> bool:
    return bool(query(pg, "postgres", "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))
