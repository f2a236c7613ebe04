"""One target of a fleet, run as the fleet's state machine asks (``infra/fleet_definition.py``).

The state machine invokes the function once per target with
``{"action": "migrate", "target": {"name", "host", "port", "secret_arn", "databases"}, "folders"}``
(``databases`` optional: every database of the layout; or ``tenant_group``
``{"name", "match"}``: the root database, then the layout's folder ``name`` on each
database of the server whose name is LIKE ``match``, see dbmigrate/tenants.py) and reads
the answer ``{"target", "done", "applied": [{"database", "versions"}], "error", "errors"}``
(``folders``, null or the layout's folders an upload changed: a target none of them concerns
answers at once with ``skipped``, its reason):

- a migration error is answered, not raised (``error``: the error document, with the
  function's names for its settings, credentials masked), so the state machine records
  the target as failed and goes on with the others as its tolerance allows; a failing
  tenant database does not stop the others (``errors``: one per failed tenant);
- ``done`` is false when the run stopped at a file boundary because this invocation's
  time ran short: the state machine invokes again and the history says what is left;
- ``applied``: what this invocation applied, per database, versions as strings (wider
  than the integers JSON carries safely).

The target's credentials come from its own secret (the role may read only the fleet's
secrets, and the function's security group reaches only the fleet's servers); the
bucket and every engine setting are the function's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dbmigrate.errors import ConfigError, DeadlineError, MigrationError
from dbmigrate.model import validate_database_name
from dbmigrate.tenants import TenantGroup

if TYPE_CHECKING:
    from environment import FunctionEnv

__all__ = ["TargetRequest", "parse_target"]

TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+$")
FIELDS = frozenset({"name", "host", "port", "secret_arn", "databases", "tenant_group"})
EXAMPLE = (
    '{"action": "migrate", "target": {"name": "eu", "host": "db.internal", "port": 5432, '
    '"secret_arn": "arn:aws:secretsmanager:...", "databases": ["tenant_1"]}}'
)


@dataclass(frozen=True)
class TargetRequest:
    """A migrate of one fleet target's server: ``databases`` of it (None: every database of the layout)."""

    name: str
    host: str
    port: int
    secret_arn: str
    databases: tuple[str, ...] | None = None
    tenant_group: TenantGroup | None = None
    folders: tuple[str, ...] | None = None
    """The layout's folders an upload changed (None: a run of everything, as at deploy time)."""
    trigger: str = "fleet"

    def unconcerned(self, root_database: str) -> str | None:
        """Why none of ``folders`` is this target's (so it has nothing to do), or None when one is.

        A target runs its databases; a tenant group's target its root database and the group's
        folder; a target with neither every database of the layout.
        """
        if self.folders is None:
            return None
        if self.tenant_group is not None:
            own = {root_database, self.tenant_group.folder}
        elif self.databases is not None:
            own = set(self.databases)
        else:
            return None
        if own & set(self.folders):
            return None
        return f"the upload changed {', '.join(self.folders)}; this target runs {', '.join(sorted(own))}"

    def log_fields(self) -> dict[str, Any]:
        databases = list(self.databases) if self.databases is not None else "all"
        return {"action": "migrate", "trigger": self.trigger, "target": self.name, "databases": databases}

    def environment(self, env: FunctionEnv) -> FunctionEnv:
        """The function's environment, pointed at this target's server and secret."""
        return replace(env, secret_arn=self.secret_arn, database_url=None, db_host=self.host, db_port=self.port)

    def skipped(self, reason: str) -> dict[str, Any]:
        """The answer of a target with nothing to do: the state machine reports it ``skipped``."""
        return {**self.answer({}, []), "skipped": reason}

    def answer(self, applied: Mapping[str, list[int]], errors: Sequence[MigrationError]) -> dict[str, Any]:
        """What the state machine reads of this invocation: ``error`` the first failure, ``errors`` all of them
        (one per failed tenant database; the others were run)."""
        failed = [error.to_dict() for error in errors if not isinstance(error, DeadlineError)]
        return {
            "target": self.name,
            "done": not any(isinstance(error, DeadlineError) for error in errors),
            "applied": [
                {"database": database, "versions": [str(version) for version in versions]}
                for database, versions in applied.items()
                if versions
            ],
            "error": failed[0] if failed else None,
            "errors": failed,
        }


def parse_target(payload: Mapping[str, Any]) -> TargetRequest:
    """The payload's target, every field checked; ConfigError naming what is wrong."""
    if set(payload) - {"action", "target", "folders"} or payload.get("action", "migrate") != "migrate":
        raise ConfigError(
            "a fleet target's payload holds only action (migrate), target and folders",
            hint=f"e.g. {EXAMPLE}",
        )
    target = payload["target"]
    if not isinstance(target, Mapping):
        raise ConfigError("target must be an object", hint=f"e.g. {EXAMPLE}")
    unknown = sorted(str(name) for name in target if name not in FIELDS)
    if unknown:
        raise ConfigError(f"unknown field(s) in the target: {', '.join(unknown)}", hint=f"use only {sorted(FIELDS)}")
    if "tenant_group" in target and "databases" in target:
        raise ConfigError("a fleet target lists databases or a tenant group, not both", hint=f"e.g. {EXAMPLE}")
    name, host, arn = (target.get(field) for field in ("name", "host", "secret_arn"))
    port = target.get("port", 5432)
    problems = [
        *([] if isinstance(name, str) and TARGET_NAME.fullmatch(name) else [f"name {name!r}: 1-80 of A-Z a-z 0-9 _.-"]),
        *([] if isinstance(host, str) and HOST.fullmatch(host) else [f"host {host!r}: a host name or IPv4 address"]),
        *([] if _is_port(port) else [f"port {port!r}: a whole number 1-65535"]),
        *([] if isinstance(arn, str) and SECRET_ARN.fullmatch(arn) else [f"secret_arn {arn!r}: a Secrets Manager ARN"]),
    ]
    if problems:
        raise ConfigError(f"the fleet target is not valid: {'; '.join(problems)}", hint=f"e.g. {EXAMPLE}")
    group = _tenant_group(target["tenant_group"]) if "tenant_group" in target else None
    folders = _databases(payload.get("folders"), what="the payload's folders")
    return TargetRequest(
        str(name), str(host), int(port), str(arn), _databases(target.get("databases")), group, folders=folders
    )


def _tenant_group(value: object) -> TenantGroup:
    if not isinstance(value, Mapping) or set(value) != {"name", "match"} or not all(map(_is_text, value.values())):
        raise ConfigError(
            "a tenant group is {name, match}: the layout's folder of tenant files and a LIKE pattern of databases",
            hint='e.g. "tenant_group": {"name": "tenant", "match": "tenant_%"}',
        )
    return TenantGroup(value["name"], value["match"])


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _databases(value: object, *, what: str = "the target's databases") -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise ConfigError(f"{what} must be a non-empty list of database names (or null)")
    return tuple(dict.fromkeys(validate_database_name(name) for name in value))
