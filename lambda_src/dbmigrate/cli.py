"""``dbmigrate``: the command line. It maps flags onto the engine and prints the result.

Exit codes: 0 success, 1 a migration failed or was refused (or a plan found a problem),
2 bad usage or configuration, 143 stopped by SIGTERM (at the statement in flight, which
the server cancels; what was done is recorded).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .cli_render import render
from .config import Option, Settings, options
from .dburl import Masker
from .errors import ConfigError, MigrationError, StoppedError, spell_neutral
from .model import FILE_NAME, validate_database_name
from .runner import Runner, RunReport
from .sources import LocalSource

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 128 + signal.SIGTERM


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = _parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    masker = Masker()  # whatever is printed, the URL's password never is, in any encoding
    masker.add_url(getattr(args, "database_url", None))
    try:
        _check_database_names(args)
        own = _OWN_COMMANDS.get("plan --function" if args.command == "plan" and args.function else args.command)
        if own is not None:  # a command that runs no local Runner
            return own(args)
        runner = Runner(
            LocalSource(args.dir),
            _settings(args),
            on_event=None if args.json else _Progress(sys.stderr),
        )
        with _sigterm_stops(runner):
            report = _run(runner, args)
    except MigrationError as exc:
        _print_error(masker.error(exc.name_settings(spell)), as_json=args.json)
        return EXIT_TERMINATED if isinstance(exc, StoppedError) else _exit_code(exc)
    except BrokenPipeError:
        return _unread()
    except Exception as exc:  # a bug, or a library's surprise: one masked line, never a traceback
        masked = masker.error(exc)
        text = str(masked) if masked is not exc else f"{type(exc).__name__}: {exc}"
        print(f"error: unexpected {text} (please report this)", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _print_result(report.to_dict(), as_json=args.json)
    except BrokenPipeError:
        return _unread()


def _unread() -> int:
    """The output's reader closed the pipe (``| head``): say so where it can still be read, and fail."""
    with suppress(OSError):
        print(
            "error: the output was not read to its end (its pipe was closed); `dbmigrate status` shows what "
            "the run did",
            file=sys.stderr,
        )
    return EXIT_FAILED


def _exit_code(exc: MigrationError) -> int:
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def _run(runner: Runner, args: argparse.Namespace) -> RunReport:
    """The Runner method the command names (the parser admits no other command)."""
    match args.command:
        case "up":
            return runner.migrate(args.database)
        case "plan":
            return runner.plan(args.database)
        case "status":
            return runner.status(args.database)
        case "down":
            return runner.down(_one_database(args), args.to, dry_run=args.dry_run)
        case "baseline":
            return runner.baseline(_one_database(args), args.version)
        case "repair":
            return runner.repair(
                _one_database(args), accept_checksums=args.accept_checksum, mark_applied=args.mark_applied
            )
    raise AssertionError(f"no action for the command {args.command!r}")


def _print_result(result: dict[str, Any], *, as_json: bool) -> int:
    """One result document, as JSON or for people; exit 1 when it names a problem."""
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        render(result, sys.stdout, sys.stderr)
    return EXIT_FAILED if result.get("problems") else EXIT_OK


def _check_database_names(args: argparse.Namespace) -> None:
    """Database names from the command line, checked once here: the engine trusts them."""
    names = [*(getattr(args, "database", None) or []), *([args.database_name] if args.command == "new" else [])]
    for name in names:
        validate_database_name(name)


@contextmanager
def _sigterm_stops(runner: Runner) -> Iterator[None]:
    """While the block runs, SIGTERM stops the run at the statement in flight.

    A Python signal handler runs only between bytecodes, not while the main thread
    waits inside libpq for a statement; so the signal also wakes a thread (through the
    wakeup fd) that cancels the statement on the server at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: runner.interrupt("SIGTERM"))

    def watch() -> None:
        while data := reader.recv(64):
            if signal.SIGTERM in data:
                runner.interrupt("SIGTERM")

    watcher = threading.Thread(target=watch, name="dbmigrate-sigterm", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.set_wakeup_fd(previous_fd)
        writer.close()
        watcher.join(timeout=1)
        reader.close()


# Each command: its help, and whether it reaches the databases (the URL and the engine's settings).
COMMANDS: dict[str, tuple[str, bool]] = {
    "up": ("apply every pending migration", True),
    "plan": ("list what up would apply; change nothing", True),
    "status": ("applied and pending migrations", True),
    "down": ("undo applied versions above --to with their .down.sql files", True),
    "baseline": ("record an existing database as being at a version", True),
    "repair": ("clear unfinished records, accept reviewed checksums", True),
    "lint": ("find statements risky on a live database", False),
    "new": ("create a correctly named migration file", False),
    "fleet": ("status or plan of every target of the deployed fleet (a table per target)", False),
}


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser of the command that ``argv`` names first, or of every command when it names
    none (for the help and the usage errors): a run builds only its own command's parser
    (each flag costs argparse a help formatter, and lint's an import of the linter)."""
    named = argv[0] if argv and argv[0] in COMMANDS else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default="migrations", help="folder of migrations (default: %(default)s)")
    common.add_argument("--json", action="store_true", help="print one JSON document for machines")
    database = _database_parser()
    parser = argparse.ArgumentParser(prog="dbmigrate", description="PostgreSQL schema migrations.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, reaches_databases) in COMMANDS.items():
        if named not in (None, name):
            continue
        parents = [common, database] if reaches_databases else [common]
        command = commands.add_parser(name, parents=parents, help=help_text)
        if name in _COMMAND_FLAGS:
            _COMMAND_FLAGS[name](command)
    return parser


def _plan_flags(plan: argparse.ArgumentParser) -> None:
    plan.add_argument(
        "--function", metavar="NAME", help="ask the deployed migration Lambda instead (sends names and checksums)"
    )


def _down_flags(down: argparse.ArgumentParser) -> None:
    down.add_argument(
        "--to",
        type=int,
        required=True,
        metavar="VERSION",
        help="the version to end at: an applied version or a file's version (0: undo all)",
    )
    down.add_argument("--dry-run", action="store_true", help="print what would be undone; undo nothing")


def _baseline_flags(baseline: argparse.ArgumentParser) -> None:
    baseline.add_argument("--version", type=int, required=True, metavar="VERSION")


def _repair_flags(repair: argparse.ArgumentParser) -> None:
    repair.add_argument(
        "--accept-checksum",
        type=int,
        action="append",
        default=[],
        metavar="VERSION",
        help="take the current content of this applied file as reviewed (repeatable)",
    )
    repair.add_argument(
        "--mark-applied",
        type=int,
        action="append",
        default=[],
        metavar="VERSION",
        help="record this unfinished file as applied: you finished it by hand (repeatable)",
    )


def _lint_flags(lint: argparse.ArgumentParser) -> None:
    from .lint import CONFIG_NAME  # noqa: PLC0415 (the linter: only for lint)

    lint.add_argument("--config", type=Path, help=f"lint config (default: <dir>/{CONFIG_NAME})")
    lint.add_argument("--database", action="append", metavar="NAME", help="only this database (repeatable)")


def _new_flags(new: argparse.ArgumentParser) -> None:
    new.add_argument("database_name", metavar="DATABASE")
    new.add_argument("description", metavar="DESCRIPTION")


def _fleet_flags(fleet: argparse.ArgumentParser) -> None:
    fleet.add_argument(
        "view",
        choices=("status", "plan"),
        help="status: what each target's databases hold; plan: what uploading --dir would apply to each",
    )
    fleet.add_argument(
        "--function", metavar="NAME", required=True, help="the deployed migration Lambda (the stack's function_name)"
    )


_COMMAND_FLAGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "plan": _plan_flags,
    "down": _down_flags,
    "baseline": _baseline_flags,
    "repair": _repair_flags,
    "lint": _lint_flags,
    "new": _new_flags,
    "fleet": _fleet_flags,
}


def _one_database(args: argparse.Namespace) -> str:
    if not args.database or len(args.database) != 1:
        raise ConfigError(f"{args.command} takes exactly one --database")
    name: str = args.database[0]
    return name


def _database_parser() -> argparse.ArgumentParser:
    """The flags of every command that reaches the databases: the URL, the names, the engine's settings."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="postgresql:// URL with a {database} placeholder (default: $DATABASE_URL)",
    )
    database.add_argument(
        "--database", action="append", metavar="NAME", help="only this database (repeatable; default: all)"
    )
    for option in options(cli=True):
        _add_option(database, option)
    return database


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """The flag of one engine setting: its help, and its default from the environment or the engine."""
    if option.kind is bool:
        parser.add_argument(option.flag, dest=option.name, action="store_true", help=option.spec.help)
        return
    # ROOT_DATABASE and HISTORY_SCHEMA: the function's variables, so that both take the same lock.
    from_env = os.environ.get(option.variable) if option.kind is str else None
    default = from_env or option.default
    unit = "S" if option.name.endswith("_s") else "NAME"
    shown = f"${option.variable} or {default}" if option.kind is str else f"{default or 0:g}"
    parser.add_argument(
        option.flag,
        dest=option.name,
        type=option.kind,
        default=default,
        metavar=unit,
        help=f"{option.spec.help} (default: {shown})" if default is not None else option.spec.help,
    )


def _settings(args: argparse.Namespace) -> Settings:
    if not args.database_url:
        raise ConfigError(
            "no database URL",
            hint="pass --database-url or set DATABASE_URL, e.g. postgresql://user:pw@host:5432/{database}",
        )
    return Settings(
        args.database_url,
        **{option.name: getattr(args, option.name) for option in options(cli=True)},
        applied_by=f"cli:{getpass.getuser()}@{socket.gethostname()}",
    )


def spell(name: str) -> str:
    """A setting as the CLI user sets it: its flag (errors name settings by field)."""
    if name == "source":
        return "--dir"
    flags = {option.name: option.flag for option in options(cli=True)}
    return flags.get(name) or spell_neutral(name)


def _remote_plan(args: argparse.Namespace) -> int:
    from .cli_remote import lambda_invoker, remote_plan  # noqa: PLC0415 (only plan --function)

    result = remote_plan(LocalSource(args.dir), lambda_invoker(args.function), args.database)
    return _print_result(result, as_json=args.json)


def _fleet(args: argparse.Namespace) -> int:
    from .cli_remote import lambda_invoker, remote_fleet  # noqa: PLC0415 (only fleet)

    source = LocalSource(args.dir) if args.view == "plan" else None
    return _print_result(remote_fleet(args.view, lambda_invoker(args.function), source), as_json=args.json)


def _lint(args: argparse.Namespace) -> int:
    from .lint import CONFIG_NAME, SEVERITIES, LintConfig, lint  # noqa: PLC0415 (only lint)

    config = LintConfig.load(args.config or Path(args.dir) / CONFIG_NAME)
    findings = lint(LocalSource(args.dir), config, args.database)
    failing = [f for f in findings if f.severity == "error" and not f.accepted]
    if args.json:
        print(json.dumps({"findings": [f.to_dict() for f in findings], "errors": len(failing)}, indent=2))
    else:
        for finding in findings:
            print(finding)
        counts = {level: sum(1 for f in findings if f.severity == level and not f.accepted) for level in SEVERITIES}
        accepted = sum(1 for f in findings if f.accepted)
        print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info, {accepted} accepted")
    return EXIT_FAILED if failing else EXIT_OK


def _new(args: argparse.Namespace) -> int:
    database: str = args.database_name
    slug = re.sub(r"[^a-z0-9]+", "_", args.description.lower()).strip("_")
    if not slug:
        raise ConfigError(f"description {args.description!r} has no letters or digits")
    folder = Path(args.dir) / database
    existing = [int(m["version"]) for p in folder.glob("*.sql") if (m := FILE_NAME.match(p.name))]
    version = int(datetime.now(UTC).strftime("%Y%m%d%H%M"))
    version = max(version, max(existing, default=0) + 1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{version}_{slug}.up.sql"
    path.write_text(f"-- {args.description}\n")
    if args.json:
        print(json.dumps({"database": database, "version": version, "file": str(path)}))
    else:
        print(f"created {path}")
    return EXIT_OK


_OWN_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "new": _new,
    "lint": _lint,
    "fleet": _fleet,
    "plan --function": _remote_plan,
}


class _Progress:
    """Human progress on stderr: the lock wait and one line per file."""

    def __init__(self, out: TextIO) -> None:
        self.out: TextIO | None = out

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "lock_wait":
            self._say(f"waiting for the migration lock, held by {event['holder']} (up to {event['max_wait_s']} s)")
        elif kind == "leftover_wait":
            self._say(
                f"waiting for the work of an earlier run that ended mid-file: {event['backends']} "
                f"(up to {event['max_wait_s']} s)"
            )
        elif kind == "lock_acquired" and event["waited_s"] >= 0.05:
            self._say(f"waited {event['waited_s']:.1f} s for another run to finish")
        elif kind == "down_plan":
            files = ", ".join(f"{item['version']} ({item['down_file']})" for item in event["undo"]) or "nothing"
            self._say(f"{event['database']}: down to {event['to']} undoes {files}")
        elif kind == "file_done":
            self._say(
                f"[{event['database']} {event['index']}/{event['total']}] {event['file']} "
                f"({event['mode']}, {event['duration_ms']} ms)"
            )

    def _say(self, text: str) -> None:
        if self.out is None:
            return
        try:
            print(text, file=self.out, flush=True)
        except OSError:  # nobody reads the progress any more (a closed pipe): the run goes on without it
            self.out = None


def _print_error(exc: MigrationError, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(exc.to_dict(), indent=2, default=str))
    else:
        print(f"error: {exc}", file=sys.stderr)
