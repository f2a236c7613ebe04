"""The command line as people run it (a subprocess): errors, never tracebacks; exit 2 for configuration.

The password of the URL never appears on stdout or stderr, in any encoding.
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, write_files

pytestmark = pytest.mark.any_pg_version("the command line's own exits and output; its one run applies plain SQL")

SECRET = "s3cret pass@word%"
FORMS = [
    SECRET,
    quote(SECRET, safe=""),
    quote_plus(SECRET, safe=""),
    quote(SECRET, safe=" "),
    SECRET.replace(" ", "+"),
]
ENCODED = quote(SECRET, safe="")


def run(*args: str, url: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "dbmigrate", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_no_secret(done: subprocess.CompletedProcess[str]) -> None:
    for form in FORMS:
        assert form not in done.stdout
        assert form not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_files(tmp_path / "migrations", {"projectdb/1_a.up.sql": "SELECT 1;\n"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://u:{ENCODED}%zz@127.0.0.1:5432/{{database}}", "not followed by two hex digits"),
        (f"postgresql://u:{SECRET}@127.0.0.1:5432/{{database}}", "the user or password holds '@'"),
        (f"postgresql://u:{quote(SECRET, safe=' ')}@127.0.0.1:5432/{{database}}", "must be percent-encoded"),
        (f"postgresql://u:{ENCODED}@[]:5432/{{database}}", "the IPv6 host '[]' is empty"),
        (f"postgresql://u:{ENCODED}@127.0.0.1:5432/{{database}}?passwd={ENCODED}", "unknown connection option"),
        (f"postgresql://u@127.0.0.1:5432/{{database}}?password={ENCODED}&bogus=1", "unknown connection option 'bogus'"),
        (f"postgresql://u:{ENCODED}@127.0.0.1:pg/{{database}}", "port 'pg' is not a number"),
        (f"postgresql://u:{ENCODED}@127.0.0.1:5432/projectdb", "no {database} placeholder"),
    ],
)
@pytest.mark.parametrize("command", ["status", "up", "plan"])
def test_a_malformed_url_exits_2_naming_its_problem_and_never_shows_the_password(
    folder: Path, url: str, problem: str, command: str
) -> None:
    done = run(command, "--dir", str(folder), url=url)
    assert done.returncode == 2, done.stderr
    assert problem in done.stderr
    assert_no_secret(done)


def test_a_malformed_url_in_json_mode_is_one_json_error_without_the_password(folder: Path) -> None:
    done = run("status", "--json", "--dir", str(folder), "--database-url", f"postgresql://u:{SECRET}@[]/{{database}}")
    assert done.returncode == 2
    assert '"error": "ConfigError"' in done.stdout
    assert_no_secret(done)


def test_a_refused_connection_exits_1_without_the_password(folder: Path, refusing_port: int) -> None:
    url = f"postgresql://u:{ENCODED}@127.0.0.1:{refusing_port}/{{database}}?sslpassword={quote_plus(SECRET)}"
    done = run("status", "--dir", str(folder), url=url)
    assert done.returncode == 1
    assert f"cannot connect to 127.0.0.1:{refusing_port}/projectdb" in done.stderr
    assert_no_secret(done)


@pytest.mark.parametrize("flag", ["--lock-wait", "--statement-timeout", "--lock-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e12"])
def test_a_timeout_that_is_not_a_sane_number_of_seconds_exits_2(folder: Path, flag: str, value: str) -> None:
    done = run(
        "status", "--dir", str(folder), f"{flag}={value}", url=f"postgresql://u:{ENCODED}@127.0.0.1/{{database}}"
    )
    assert done.returncode == 2, done.stderr
    assert "number of seconds" in done.stderr or "must not be negative" in done.stderr
    assert_no_secret(done)


@pytest.mark.parametrize("command", ["up", "status", "plan", "lint"])
def test_a_missing_migrations_folder_is_a_configuration_error(tmp_path: Path, command: str) -> None:
    done = run(command, "--dir", str(tmp_path / "nowhere"), url="postgresql://u:pw@127.0.0.1/{database}")
    assert done.returncode == 2, done.stderr
    assert f"migrations folder {tmp_path / 'nowhere'} does not exist" in done.stderr


def test_a_migrations_folder_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "migrations").write_text("")
    done = run("status", "--dir", str(tmp_path / "migrations"), url="postgresql://u:pw@127.0.0.1/{database}")
    assert done.returncode == 2
    assert "is not a folder" in done.stderr


def test_no_database_url_is_a_configuration_error(folder: Path) -> None:
    done = run("status", "--dir", str(folder))
    assert done.returncode == 2
    assert "no database URL" in done.stderr


def test_new_with_a_bad_database_name_is_a_usage_error(tmp_path: Path) -> None:
    done = run("new", "ProjectDB", "add users", "--dir", str(tmp_path))
    assert done.returncode == 2
    assert "'ProjectDB' is not a valid database name" in done.stderr


@pytest.mark.parametrize("command", ["up", "plan", "status", "repair"])
@pytest.mark.parametrize("name", ["ProjectDB", "x;drop", "a" * 64])
def test_a_bad_database_flag_is_a_usage_error_before_anything_connects(folder: Path, command: str, name: str) -> None:
    done = run(command, "--database", "projectdb", "--database", name, "--dir", str(folder))
    assert done.returncode == 2
    assert f"{name!r} is not a valid database name" in done.stderr  # said before "no database URL"


def test_up_on_an_empty_migrations_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    done = run("up", "--dir", str(tmp_path / "migrations"), url="postgresql://u:pw@127.0.0.1/{database}")
    assert done.returncode == 2
    assert f"no migrations found at {tmp_path / 'migrations'}" in done.stderr


@pytest.mark.parametrize("command", ["status", "plan"])
def test_status_and_plan_of_an_empty_migrations_folder_warn(tmp_path: Path, command: str) -> None:
    (tmp_path / "migrations" / "notes").mkdir(parents=True)
    folder = str(tmp_path / "migrations")
    done = run(command, "--dir", folder, url="postgresql://u:pw@127.0.0.1/{database}")
    assert done.returncode == 0
    assert f"warning: no migrations found at {folder}" in done.stderr
    as_json = run(command, "--json", "--dir", folder, url="postgresql://u:pw@127.0.0.1/{database}")
    assert '"warnings": [' in as_json.stdout


def test_everything_printed_arrives_before_the_command_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command leaves without the interpreter's teardown: its output, far over a pipe's buffer, is flushed first."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # buffered, as on most machines
    sql = "CREATE INDEX i{0} ON t{0} (id);\nDROP TABLE x{0};\n"
    files = {f"projectdb/{v}_t{v}.up.sql": sql.format(v) for v in range(1, 301)}
    root = str(write_files(tmp_path / "migrations", files))
    done = run("lint", "--dir", root, "--json")
    assert len(done.stdout) > 100_000, "more than a pipe holds (64 KiB)"
    assert done.stdout.endswith("}\n") and done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["findings"]
    assert {finding["file"] for finding in findings} == set(files)
    table = run("lint", "--dir", root)  # a line at a time
    assert table.stdout.splitlines()[-1].startswith("300 error(s), 300 warning(s)"), table.stdout[-300:]


def test_a_reader_that_stops_reading_the_output_ends_the_command_with_a_line_saying_so(tmp_path: Path) -> None:
    sql = "CREATE INDEX i{0} ON t{0} (id);\nDROP TABLE x{0};\n"
    root = write_files(tmp_path / "migrations", {f"db/{v}_t{v}.up.sql": sql.format(v) for v in range(1, 301)})
    command = [sys.executable, "-m", "dbmigrate", "lint", "--dir", str(root), "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as lint:
        assert lint.stdout and lint.stderr
        lint.stdout.read(1)  # as `| head -c 1` does
        lint.stdout.close()
        err = lint.stderr.read()
        code = lint.wait(timeout=60)
    assert code == 1 and "the output was not read to its end" in err, err
    assert "unexpected" not in err and "Traceback" not in err


def test_a_run_goes_on_when_nobody_reads_its_progress(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    root = write_files(
        tmp_path / "migrations", {f"appdb/{v}_t{v}.up.sql": f"CREATE TABLE t{v} ();\n" for v in range(1, 31)}
    )
    command = [sys.executable, "-m", "dbmigrate", "up", "--dir", str(root), "--database", "appdb"]
    query(pg, "postgres", "CREATE DATABASE appdb")
    env = {**os.environ, "DATABASE_URL": pg.url()}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        assert up.stdout and up.stderr
        up.stderr.close()  # progress goes to stderr: its reader is gone before the first line
        out = up.stdout.read()
        code = up.wait(timeout=60)
    assert code == 0, out
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 31)]


def test_a_profiler_watching_the_command_still_gets_to_write_its_results(tmp_path: Path, folder: Path) -> None:
    """The command skips the interpreter's teardown only when nothing watches it (cProfile writes at exit)."""
    out = tmp_path / "profile.out"
    command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "dbmigrate", "lint", "--dir", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    functions = pstats.Stats(str(out)).get_stats_profile().func_profiles
    assert "main" in functions and "run" in functions, "the profile holds the command's own functions"
