"""The one exception hierarchy of the engine.

Every error names where it happened (database, file, line) and how to fix it.
``str(error)`` is one line for people and logs; ``to_dict()`` feeds JSON output.
``ConfigError`` is a usage or configuration problem (CLI exit code 2); every other
``MigrationError`` means a migration failed or was refused (exit code 1).

A hint names a setting by its field, as ``{lock_wait_s}`` with ``settings=("lock_wait_s",)``:
the engine does not know how its caller spells it. Alone it reads "the lock_wait_s setting";
an edge calls ``name_settings`` with its own spelling (the CLI's flag, the function's
environment variable) before it prints or raises the error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# What the engine's hints name besides its settings: where the files are, and the run's time.
CONCEPTS = {"source": "the migration source", "time_budget": "more time"}


def spell_neutral(name: str) -> str:
    """A setting or concept as the engine alone names it (no edge's spelling)."""
    return CONCEPTS.get(name, f"the {name} setting")


class MigrationError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(  # noqa: PLR0913  the fields every error may name, all keyword-only
        self,
        message: str,
        *,
        database: str | None = None,
        file: str | None = None,
        line: int | None = None,
        statement: str | None = None,
        hint: str | None = None,
        settings: Sequence[str] = (),
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.database = database
        self.file = file
        self.line = line
        self.statement = statement
        self.settings = tuple(settings)
        """The settings the hint names: fields of ``dbmigrate.config.Options``, or a key of CONCEPTS."""
        self._hint_template = hint
        self.hint = hint
        self.name_settings(spell_neutral)
        self.details = details

    def name_settings(self, spell: Callable[[str], str]) -> MigrationError:
        """Spell the settings the hint names as the caller knows them (``spell("lock_wait_s")``)."""
        if self._hint_template is not None and self.settings:
            hint = self._hint_template
            for name in self.settings:
                hint = hint.replace("{" + name + "}", spell(name))
            self.hint = hint
        return self

    @property
    def where(self) -> str:
        """``database/file:line`` as far as known, or an empty string."""
        where = self.file or self.database or ""
        if self.file and self.database and not self.file.startswith(f"{self.database}/"):
            where = f"{self.database}/{self.file}"
        if self.line is not None and where:
            where += f":{self.line}"
        return where

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" Fix: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description: type, message and every known field."""
        data: dict[str, Any] = {"error": type(self).__name__, "message": str(self)}
        for name in ("database", "file", "line", "statement", "hint"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        data.update(self.details)
        return data


class ConfigError(MigrationError):
    """Bad usage or configuration: a missing URL, an unknown option, a bad argument."""


class LayoutError(MigrationError):
    """Migration files or folders that do not follow the layout; ``problems`` lists each."""


class SourceError(MigrationError):
    """The migration source (folder or bucket) could not be listed or read."""


class DatabaseConnectError(MigrationError):
    """A database could not be reached or does not exist."""


class PrivilegeError(MigrationError):
    """The role lacks a privilege the run needs, or its session is read-only; the hint is the GRANT."""


class ChecksumMismatchError(MigrationError):
    """An applied file's content changed since it was applied."""


class ForeignHistoryError(MigrationError):
    """The history records a different file at a version (another project's folder or database)."""


class OutOfOrderError(MigrationError):
    """A pending file's version is lower than the newest applied version."""


class PartialMigrationError(MigrationError):
    """A file that runs outside a transaction failed or stopped half way; repair first."""


class UnsupportedSqlError(MigrationError):
    """A file holds something the engine will not run (psql meta-commands, stray COMMIT)."""


class SqlError(MigrationError):
    """PostgreSQL refused a statement of a migration file."""


class LockTimeoutError(MigrationError):
    """Another run held the migration lock for longer than the wait allowed."""


class DeadlineError(MigrationError):
    """The run stopped before starting the next file because its time budget ran short."""


class LockLostError(MigrationError):
    """The run's lock (its session on the root database) was lost; nothing more is started."""


class ConnectionLostError(MigrationError):
    """A connection of the run failed mid-file (server restart, network); the history says what is done."""


class StoppedError(MigrationError):
    """The run was asked to stop (SIGTERM) and stopped at the statement in flight."""


class FleetError(MigrationError):
    """The fleet's state machine could not be started or waited for, or its execution failed."""
