"""Settings of a run: every field, default, bound and help once, validated once.

``Options`` is the one list of the engine's settings. Each edge derives its own names
from a field's name (``Option``): the CLI flag ``--lock-wait`` (a trailing ``_s``
dropped), the function's environment variable ``LOCK_WAIT_S`` and the stack's setting
``lock_wait_s`` (``DBMIGRATE_LOCK_WAIT_S``); the defaults are these fields' and nobody
else's. Only the edges build Settings from flags and environment; the engine takes them
as they are.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import quote

from .dburl import DatabaseUrl, Masker, parse_url
from .errors import ConfigError
from .model import DATABASE_NAME, ROOT_DATABASE

__all__ = ["Option", "Options", "Settings", "options", "url_template"]

PLACEHOLDER = "{database}"
# The original write-up's URL ends in a literal DB_NAME; accept it and {DB_NAME} too.
LEGACY_PLACEHOLDER = re.compile(r"\{DB_NAME\}|(?<=/)DB_NAME(?=$|\?)")
# Upper bounds of the numbers (seconds): PostgreSQL's timeouts are int milliseconds.
MAX_SERVER_TIMEOUT_S = 2_147_483
MAX_WAIT_S = 86_400
BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True)
class Spec:
    """What a field of Options means: its help, its bounds (numbers), whether the CLI offers it."""

    help: str
    low: int = 0
    high: int = MAX_WAIT_S
    cli: bool = True
    """False where the CLI has no use for it (the time kept in reserve of a Lambda's budget)."""


def _option(default: Any, help: str, *, low: int = 0, high: int = MAX_WAIT_S, cli: bool = True) -> Any:
    return field(default=default, metadata={"spec": Spec(help, low, high, cli)})


@dataclass(frozen=True, kw_only=True)
class Options:
    """The engine's settings that every edge offers (timeouts in seconds; ``None``: the server's own)."""

    root_database: str = _option(
        ROOT_DATABASE,
        "the server's root database: run first, and where the run's lock is taken (give the CLI and the "
        "function the same, so that both take the same lock)",
    )
    history_schema: str = _option("dbmigrate", "the schema of the history table in each database")
    connect_timeout_s: int = _option(5, "seconds to connect to a database", low=1)
    lock_wait_s: float = _option(60.0, "seconds to wait for another run's lock (in Lambda: never past its time)")
    statement_timeout_s: float | None = _option(
        None, "per statement, seconds (default: the server's; 0: no limit)", high=MAX_SERVER_TIMEOUT_S
    )
    lock_timeout_s: float | None = _option(
        None, "per table lock, seconds (default: the server's; 0: no limit)", high=MAX_SERVER_TIMEOUT_S
    )
    min_time_left_s: float = _option(
        30.0, "seconds of a Lambda's remaining time kept in reserve: no new file starts with less", cli=False
    )
    network_timeout_s: float = _option(30.0, "seconds a connection may stop answering before it counts as lost", low=1)
    dead_client_check_s: float = _option(
        2.0, "how often the server checks that a run executing a statement is still there (PostgreSQL 14+; 0: never)"
    )
    allow_out_of_order: bool = _option(False, "apply files older than the newest applied one")
    all_or_nothing: bool = _option(
        False,
        "apply each database's pending files in one transaction: a failure leaves it as before the run "
        "(refused up front when a file cannot run in a transaction)",
    )

    def __post_init__(self) -> None:
        for option in options():
            option.check(getattr(self, option.name))


@dataclass(frozen=True)
class Settings(Options):
    """How to reach the databases, who applies, and the Options of the run.

    ``url_template`` is a ``postgresql://`` URL whose database is ``{database}``
    (``DB_NAME`` is accepted). ``min_time_left_s`` is the time a run keeps in reserve:
    no new file is started when less than that is left of its budget (the Lambda's
    remaining time). ``network_timeout_s``: how long a connection may stop answering
    (keepalives, tcp_user_timeout) before it counts as lost. ``dead_client_check_s``:
    how often the server checks, while a run's statement executes, that the run is
    still there (PostgreSQL 14+; 0 turns it off).
    """

    url_template: str = field(repr=False)
    applied_by: str = field(default="dbmigrate", kw_only=True)
    parsed_url: DatabaseUrl = field(init=False, repr=False, compare=False)
    """The checked URL: hosts, options and the secrets to mask."""

    def __post_init__(self) -> None:
        template = LEGACY_PLACEHOLDER.sub(PLACEHOLDER, self.url_template)
        object.__setattr__(self, "url_template", template)
        object.__setattr__(self, "parsed_url", parse_url(template))
        super().__post_init__()

    def masker(self) -> Masker:
        """A Masker that knows this URL's passwords, for everything an edge prints or logs."""
        return Masker(self.parsed_url.secrets)

    def url(self, database: str) -> str:
        """The connection URL of one database (names are validated, so no quoting is needed)."""
        return self.url_template.replace(PLACEHOLDER, database)

    def server_options(self) -> str:
        """libpq ``options`` that set the per-session timeouts, or an empty string."""
        options = []
        if self.statement_timeout_s is not None:
            options.append(f"-c statement_timeout={_milliseconds(self.statement_timeout_s)}")
        if self.lock_timeout_s is not None:
            options.append(f"-c lock_timeout={_milliseconds(self.lock_timeout_s)}")
        return " ".join(options)


@dataclass(frozen=True)
class Option:
    """One field of Options, and its name at each edge."""

    name: str
    kind: type[Any]
    """int, float, str or bool (without the None of an optional number)."""
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        """The CLI flag: ``lock_wait_s`` -> ``--lock-wait``."""
        return "--" + self.name.removesuffix("_s").replace("_", "-")

    @property
    def variable(self) -> str:
        """The function's environment variable: ``lock_wait_s`` -> ``LOCK_WAIT_S``."""
        return self.name.upper()

    @property
    def label(self) -> str:
        """Words for messages: ``lock_wait_s`` -> ``lock wait``."""
        return self.name.removesuffix("_s").replace("_", " ")

    def check(self, value: Any) -> None:
        """Refuse a value of the wrong type or out of bounds, naming the setting by its field."""
        if value is None and self.default is None:
            return
        if self.kind is str:
            if not isinstance(value, str) or not DATABASE_NAME.match(value):
                raise ConfigError(
                    f"{value!r} is not a valid database or schema name",
                    hint=f"give {{{self.name}}} lower-case letters, digits and underscores",
                    settings=(self.name,),
                )
        elif self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.label} must be true or false (got {value!r})", settings=(self.name,))
        else:
            _check_number(self, value)

    def parse(self, text: str, source: str) -> Any:
        """The value of a string (an environment variable named ``source``), checked."""
        if self.kind is str:
            value: Any = text
        elif self.kind is bool:
            if text.lower() not in BOOLEANS:
                raise ConfigError(f"{source} must be true or false, not {text!r}")
            value = BOOLEANS[text.lower()]
        else:
            expected = "a whole number" if self.kind is int else "a number"
            try:
                value = self.kind(text)
            except ValueError:
                raise ConfigError(f"{source} must be {expected}, not {text!r}") from None
            if not math.isfinite(value):
                raise ConfigError(f"{source} must be a finite number, not {text!r}")
        self.check(value)
        return value


def options(*, cli: bool | None = None) -> tuple[Option, ...]:
    """The fields of Options in order; ``cli=True``: only those the CLI offers."""
    hints = typing.get_type_hints(Options)
    found = tuple(_describe(item, hints[item.name]) for item in fields(Options))
    return tuple(option for option in found if cli is None or option.spec.cli == cli)


def _describe(item: Field[Any], hint: Any) -> Option:
    kind = next(arg for arg in (*typing.get_args(hint), hint) if arg in (int, float, str, bool))
    return Option(item.name, kind, item.default, item.metadata["spec"])


def _check_number(option: Option, value: Any) -> None:
    """Refuse nan, infinities and values out of bounds (with their unit, seconds)."""
    label, low, high = option.label, option.spec.low, option.spec.high
    if isinstance(value, bool) or not isinstance(value, int | float):
        problem = f"must be a number of seconds (got {value!r})"
    elif not math.isfinite(value):
        problem = f"must be a finite number of seconds (got {value!r})"
    elif value < low:
        problem = "must not be negative" if low == 0 else f"must be at least {low} second"
        problem += f" (got {value!r})"
    elif value > high:
        problem = f"must be at most {high} seconds (got {value!r})"
    else:
        return
    raise ConfigError(
        f"{label} {problem}", hint=f"give {{{option.name}}} a plain number of seconds, e.g. 30", settings=(option.name,)
    )


def _milliseconds(seconds: float) -> int:
    """Whole milliseconds; a positive value never rounds to 0 (which means no limit)."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def url_template(user: str, password: str, host: str, port: int | str, **query: str) -> str:
    """Build a URL template from parts (e.g. an RDS secret), quoting user and password."""
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{PLACEHOLDER}"
    if query:
        url += "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in sorted(query.items()))
    return url
