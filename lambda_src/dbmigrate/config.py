"""Settings of a run: every default in one place, validated once.

Only the edges (CLI, Lambda handler) build Settings from flags and environment; the
engine takes them as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import ConfigError
from .model import DATABASE_NAME, ROOT_DATABASE

__all__ = ["Settings", "url_template"]

PLACEHOLDER = "{database}"
# The original write-up's URL ends in a literal DB_NAME; accept it and {DB_NAME} too.
LEGACY_PLACEHOLDER = re.compile(r"\{DB_NAME\}|(?<=/)DB_NAME(?=$|\?)")


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

    url_template: str
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

    def __post_init__(self) -> None:
        template = LEGACY_PLACEHOLDER.sub(PLACEHOLDER, self.url_template)
        object.__setattr__(self, "url_template", template)
        if not template.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "the database URL must start with postgresql://",
                hint="set it like postgresql://user:password@host:5432/{database}",
            )
        if PLACEHOLDER not in template:
            raise ConfigError(
                "the database URL has no {database} placeholder",
                hint="put {database} where the database name goes: postgresql://user:pw@host:5432/{database}",
            )
        for name in (self.root_database, self.history_schema):
            if not DATABASE_NAME.match(name):
                raise ConfigError(f"{name!r} is not a valid database or schema name")
        if self.connect_timeout_s < 1:
            raise ConfigError("connect timeout must be at least 1 second")
        if not self.network_timeout_s >= 1:
            raise ConfigError(f"network timeout must be at least 1 second (got {self.network_timeout_s})")
        for label, value in (
            ("lock wait", self.lock_wait_s),
            ("statement timeout", self.statement_timeout_s),
            ("lock timeout", self.lock_timeout_s),
            ("minimum time left", self.min_time_left_s),
            ("dead client check", self.dead_client_check_s),
        ):
            if value is not None and value < 0:
                raise ConfigError(f"{label} must not be negative (got {value})")

    def url(self, database: str) -> str:
        """The connection URL of one database (names are validated, so no quoting is needed)."""
        return self.url_template.replace(PLACEHOLDER, database)

    def server_options(self) -> str:
        """libpq ``options`` that set the per-session timeouts, or an empty string."""
        options = []
        if self.statement_timeout_s is not None:
            options.append(f"-c statement_timeout={int(self.statement_timeout_s * 1000)}")
        if self.lock_timeout_s is not None:
            options.append(f"-c lock_timeout={int(self.lock_timeout_s * 1000)}")
        return " ".join(options)


def url_template(user: str, password: str, host: str, port: int | str, **query: str) -> str:
    """Build a URL template from parts (e.g. an RDS secret), quoting user and password."""
    url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{PLACEHOLDER}"
    if query:
        url += "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in sorted(query.items()))
    return url
