"""The tools compared, how each is found, and the commands that apply a set.

Peers are installed outside the engine's environment: dbmate from npm
(``bench/package.json`` + lock, ``npm install --prefix bench --no-save``; its native binary is run,
not the Node wrapper), yoyo-migrations from the Pipfile's dev-packages, or else from
``bench/.venv-peers`` (see bench/README.md). A tool that is not installed is skipped
and named in the results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local.postgres import EmbeddedPostgres

from .sets import DATABASE, Layouts

__all__ = [
    "BENCH",
    "OURS",
    "OURS_ALL_OR_NOTHING",
    "OURS_TOOLS",
    "PSQL_FLOOR",
    "PSQL_PER_FILE",
    "Tool",
    "engine_snapshot",
    "find_tools",
]

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_VENV = BENCH / ".venv-peers"
DBMATE = BENCH / "node_modules" / "@dbmate" / "linux-x64" / "bin" / "dbmate"
OURS, DBMATE_NAME, YOYO_NAME = "dbmigrate (ours)", "dbmate", "yoyo"
ALL_OR_NOTHING_FLAG = "--all-or-nothing"
OURS_ALL_OR_NOTHING = f"dbmigrate up {ALL_OR_NOTHING_FLAG} (ours)"
OURS_TOOLS = (OURS, OURS_ALL_OR_NOTHING)
PSQL_PER_FILE, PSQL_FLOOR = "psql -1 -f per file", "psql, one session (floor)"

Commands = Callable[[Layouts, EmbeddedPostgres], list[list[str]]]


@dataclass(frozen=True)
class Tool:
    """A tool under test: ``commands`` apply a set; ``history`` says a second run can be timed."""

    name: str
    version: str
    commands: Commands
    history: bool
    peer: bool
    env: dict[str, str]


def find_tools(server: EmbeddedPostgres, engine: Path | None = None) -> tuple[list[Tool], list[str]]:
    """The tools found on this machine, and a line per tool that was not found.

    ``engine`` is a ``lambda_src`` folder to run our CLI from instead of the work tree.
    """
    missing: list[str] = []
    env = {**os.environ, "PGPASSWORD": server.password}
    psql = str(server.client_bindir / "psql")  # the packaged server has no psql
    psql_version = _output([psql, "--version"]).split()[2]
    tools = [_ours(env, engine)]
    all_or_nothing = _ours(env, engine, flags=(ALL_OR_NOTHING_FLAG,))
    if _offers_flag(all_or_nothing.env, ALL_OR_NOTHING_FLAG):
        tools.append(all_or_nothing)
    else:
        missing.append(f"{OURS_ALL_OR_NOTHING}: `dbmigrate up --help` does not list {ALL_OR_NOTHING_FLAG} (not yet)")
    dbmate = _dbmate(env)
    if dbmate:
        tools.append(dbmate)
    else:
        missing.append(f"{DBMATE_NAME}: not installed (run `npm install --prefix bench --no-save`)")
    yoyo = _yoyo(env)
    if yoyo:
        tools.append(yoyo)
    else:
        missing.append(
            f"{YOYO_NAME}: not installed (yoyo-migrations in the Pipfile's dev-packages, or bench/README.md)"
        )
    tools.append(Tool(PSQL_PER_FILE, psql_version, _psql_per_file(psql), history=False, peer=False, env=env))
    tools.append(Tool(PSQL_FLOOR, psql_version, _psql_session(psql), history=False, peer=False, env=env))
    return tools, missing


def engine_snapshot(revision: str, work: Path) -> Path:
    """``lambda_src`` of a git revision, exported under ``work``: benchmark a commit, not the work tree."""
    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", revision])
    target = work / f"engine-{commit}"
    if not (target / "lambda_src").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", revision, "lambda_src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "lambda_src"


def _ours(env: dict[str, str], engine: Path | None, *, flags: tuple[str, ...] = ()) -> Tool:
    """Our CLI as ``python -m dbmigrate up [flags]``: from the work tree, or from ``engine`` (a snapshot)."""
    if engine is not None:
        env = {**env, "PYTHONPATH": str(engine)}
        revision = engine.parent.name.removeprefix("engine-")
        label = f"commit {revision}"
    else:
        commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        changed = _output(["git", "-C", str(REPO), "status", "--porcelain", "lambda_src"]) not in ("", "?")
        label = f"work tree at {commit}" + (" + uncommitted changes" if changed else "")
    version = _output([sys.executable, "-c", "import importlib.metadata as m; print(m.version('dbmigrate'))"])
    # Its bytecode, as an installed package has it (pip compiles at install): where
    # PYTHONDONTWRITEBYTECODE is set, every run would otherwise compile the engine again.
    package = (engine or REPO / "lambda_src") / "dbmigrate"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, stdout=subprocess.DEVNULL)

    def commands(layouts: Layouts, server: EmbeddedPostgres) -> list[list[str]]:
        args = ["--dir", str(layouts.ours), "--database-url", server.url(), "--database", DATABASE, "--json"]
        return [[sys.executable, "-m", "dbmigrate", "up", *flags, *args]]

    name = OURS_ALL_OR_NOTHING if ALL_OR_NOTHING_FLAG in flags else OURS
    return Tool(name, f"{version} ({label})", commands, history=True, peer=False, env=env)


def _offers_flag(env: dict[str, str], flag: str) -> bool:
    """Whether this engine's ``dbmigrate up --help`` lists ``flag``."""
    command = [sys.executable, "-m", "dbmigrate", "up", "--help"]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, check=False).stdout
    return flag in shown.split()


def _dbmate(env: dict[str, str]) -> Tool | None:
    if not DBMATE.is_file():
        return None
    version = _output([str(DBMATE), "--version"]).split()[-1]

    def commands(layouts: Layouts, server: EmbeddedPostgres) -> list[list[str]]:
        url = f"{server.url(DATABASE).replace('postgresql://', 'postgres://')}?sslmode=disable"
        return [[str(DBMATE), "--url", url, "--migrations-dir", str(layouts.dbmate), "--no-dump-schema", "migrate"]]

    return Tool(DBMATE_NAME, version, commands, history=True, peer=True, env=env)


def _yoyo(env: dict[str, str]) -> Tool | None:
    for bindir in (Path(sys.executable).parent, PEERS_VENV / "bin"):
        executable = bindir / "yoyo"
        if executable.is_file():
            break
    else:
        return None
    python = executable.parent / "python"
    version = _output([str(python), "-c", "import importlib.metadata as m; print(m.version('yoyo-migrations'))"])

    def commands(layouts: Layouts, server: EmbeddedPostgres) -> list[list[str]]:
        url = server.url(DATABASE)
        return [[str(executable), "apply", "--batch", "--no-config-file", "--database", url, str(layouts.yoyo)]]

    return Tool(YOYO_NAME, version, commands, history=True, peer=True, env=env)


def _psql_args(psql: str, server: EmbeddedPostgres) -> list[str]:
    connection = ["-h", server.host, "-p", str(server.port), "-U", server.user, "-d", DATABASE]
    return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *connection, "-1"]


def _psql_per_file(psql: str) -> Commands:
    def commands(layouts: Layouts, server: EmbeddedPostgres) -> list[list[str]]:
        base = _psql_args(psql, server)
        return [[*base, "-f", str(path)] for path in layouts.files]

    return commands


def _psql_session(psql: str) -> Commands:
    def commands(layouts: Layouts, server: EmbeddedPostgres) -> list[list[str]]:
        files = [arg for path in layouts.files for arg in ("-f", str(path))]
        return [[*_psql_args(psql, server), *files]]

    return commands


def _output(command: list[str]) -> str:
    if not shutil.which(command[0]) and not Path(command[0]).is_file():
        return "?"
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).strip() or "?"
