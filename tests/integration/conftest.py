"""Helpers for tests against the real PostgreSQL server: files on disk, the CLI, queries."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbmigrate.cli import main
from local import net
from local.postgres import EmbeddedPostgres
from tests.helpers import write_files

Files = Mapping[str, str]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self, code: int = 1) -> dict[str, Any]:
        """The ``--json`` error document of a run that exited with ``code``."""
        assert self.code == code, (self.code, self.out, self.err)
        document: dict[str, Any] = self.json()
        return document


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A local port nothing listens on: connections to it are refused at once."""
    with net.refusing_port() as port:
        yield port


@pytest.fixture
def write_migrations(tmp_path: Path) -> Callable[[Files], Path]:
    """Write ``{"db/1_x.up.sql": sql}`` under a fresh folder and return the folder."""
    return functools.partial(write_files, tmp_path / "migrations")


@pytest.fixture
def cli(pg: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``dbmigrate`` in this process against the test server; returns code, stdout, stderr."""

    def run(*args: str, url: str | None = None) -> CliResult:
        capsys.readouterr()
        extra = [] if args[0] == "new" else ["--database-url", pg.url() if url is None else url]
        code = main([*args, *extra])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
