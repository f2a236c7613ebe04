"""Settings of a run: every default in one place, validated once.

Only the edges (CLI, Lambda handler) build Settings from flags and environment; the
engine takes them as they are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from .dburl import DatabaseUrl, Masker, parse_url
from .errors import ConfigError
from .model import DATABASE_NAME, ROOT_DATABASE

__all__ = ["Settings", "url_template"]

PLACEHOLDER = "{database}"
# The original write-up's URL ends in a literal DB_NAME; accept it and {DB_NAME} too.
LEGACY_PLACEHOLDER = re.compile(r"\{DB_NAME\}|(?<=/)DB_NAME(?=$|\?)")
# Upper bounds of the numbers (seconds): PostgreSQL's timeouts are int milliseconds.
MAX_SERVER_TIMEOUT_S = 2_147_483
MAX_WAIT_S = 86_400


@dataclass(frozen=True)
class Settings:
    """How to reach the databases and how long to wait for what.

    ``url_template`` is a ``postgresql://`` URL whose database is ``{database}``
    (``DB_NAME`` is accepted). Timeouts in seconds; ``None`` means the server's own
    setting. ``min_time_left_s`` is the time a run keeps in reserve: no new file is
    started when less than that is left of its budget (the Lambda's remaining time).
    ``network_timeout_s``: how long a connection may stop answering (keepalives,
    tcp_user_timeout) before it counts as lost. ``dead_client_check_s``: how often
    the server checks, while a run's statement executes, that the run is still there
    (PostgreSQL 14+; 0 turns it off).
    """

    url_template: str = field(repr=False)
    root_database: str = ROOT_DATABASE
    history_schema: str = "dbmigrate"
    connect_timeout_s: int = 5
    lock_wait_s: float = 60.0
    statement_timeout_s: float | None = None
    lock_timeout_s: float | None = None
    min_time_left_s: float = 30.0
    allow_out_of_order: bool = False
    applied_by: str = "dbmigrate"
    network_timeout_s: float = 30.0
    dead_client_check_s: float = 2.0
    parsed_url: DatabaseUrl = field(init=False, repr=False, compare=False)
    """The checked URL: hosts, options and the secrets to mask."""

    def __post_init__(self) -> None:
        template = LEGACY_PLACEHOLDER.sub(PLACEHOLDER, self.url_template)
        object.__setattr__(self, "url_template", template)
        object.__setattr__(self, "parsed_url", parse_url(template))
        for name in (self.root_database, self.history_schema):
            if not DATABASE_NAME.match(name):
                raise ConfigError(f"{name!r} is not a valid database or schema name")
        _check_number("connect timeout", self.connect_timeout_s, low=1, high=MAX_WAIT_S)
        _check_number("network timeout", self.network_timeout_s, low=1, high=MAX_WAIT_S)
        for label, value, high in (
            ("lock wait", self.lock_wait_s, MAX_WAIT_S),
            ("statement timeout", self.statement_timeout_s, MAX_SERVER_TIMEOUT_S),
            ("lock timeout", self.lock_timeout_s, MAX_SERVER_TIMEOUT_S),
            ("minimum time left", self.min_time_left_s, MAX_WAIT_S),
            ("dead client check", self.dead_client_check_s, MAX_WAIT_S),
        ):
            if value is not None:
                _check_number(label, value, low=0, high=high)

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


def _check_number(label: str, value: float, *, low: int, high: int) -> None:
    """Refuse nan, infinities and values out of bounds (with their unit, seconds)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{label} must be a number of seconds (got {value!r})")
    if not math.isfinite(value):
        problem = f"must be a finite number of seconds (got {value!r})"
    elif value < low:
        problem = "must not be negative" if low == 0 else f"must be at least {low} second"
        problem += f" (got {value!r})"
    elif value > high:
        problem = f"must be at most {high} seconds (got {value!r})"
    else:
        return
    raise ConfigError(f"{label} {problem}", hint="give a plain number of seconds, e.g. 30")


def _milliseconds(seconds: float) -> int:
    """Whole milliseconds; a positive value never rounds to 0 (which means no limit)."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def url_template(user: str, password: str, host: str, port: int | str, **query: str) -> str:
    """Build a URL template from parts (e.g. an RDS secret), quoting user and password."""
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{PLACEHOLDER}"
    if query:
        url += "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in sorted(query.items()))
    return url
