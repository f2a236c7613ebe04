"""StackConfig: every setting of the example stack, its default, and its validation.

``main.py`` is the only reader of the outside world: it passes the ``context`` of
``cdktf.json`` and the environment to ``StackConfig.from_sources``. Every field can be
set in the context under its own name, or in the environment as ``DBMIGRATE_<NAME>``
(upper case; lists comma-separated; booleans true/false), the environment winning.
The defaults synthesize with no AWS account.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dbmigrate.config import Options
from dbmigrate.errors import ConfigError

from .fleet_plan import Rollout
from .names import Part, name_problems, tag_problems

__all__ = ["ENV_PREFIX", "ConfigError", "StackConfig"]

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "DBMIGRATE_"
RunMode = Literal["every-apply", "on-change"]
Architecture = Literal["x86_64", "arm64"]

NAME = re.compile(r"^[a-z](?:-?[a-z0-9])+$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ENGINE_VERSION = re.compile(r"^\d+(\.\d+)?$")
FLEET_SERVER = re.compile(r"^[a-z][a-z0-9]{0,9}$")
PRINCIPAL_ID = re.compile(r"^(AWS:)?A[A-Z0-9]{15,127}(:[\w+=,.@-]{2,64})?$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|\*):((role|user)/[\w+=,.@/*-]+|root)$")
ARN_ASSUMED_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::")
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


@dataclass(frozen=True)
class StackConfig(Options):
    """The example stack's settings, validated once at construction.

    The engine's settings (``Options``: root_database, lock_wait_s, statement_timeout_s, ...)
    are inherited with the engine's defaults; each reaches the function's environment only
    when it is set (not None).
    """

    name: str = "dbmigrate"
    """Prefix of every resource name: lower-case letters, digits and hyphens."""
    region: str = "eu-west-1"
    tags: Mapping[str, str] = field(default_factory=dict)

    # Terraform state: a local file beside the synthesized stack, or an S3 bucket.
    state_bucket: str | None = None
    state_key: str = "dbmigrate/terraform.tfstate"

    # What the function runs and how often.
    migrations_dir: Path = ROOT / "migrations"
    migrations_prefix: str = "migrations/"
    run_mode: RunMode = "every-apply"
    architecture: Architecture = "x86_64"

    # The network: a new VPC, or bring your own (then no network is created).
    vpc_cidr: str = "10.20.0.0/16"
    existing_vpc_id: str | None = None
    existing_subnet_ids: tuple[str, ...] = ()

    # The database: a new RDS PostgreSQL, or bring your own (needs your VPC too).
    db_engine_version: str = "16"
    db_instance_class: str = "db.t4g.micro"
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 100
    db_multi_az: bool = True
    db_deletion_protection: bool = True
    db_backup_retention_days: int = 7
    db_monitoring_interval_s: int = 60
    db_master_username: str = "dbadmin"
    db_apply_immediately: bool = False
    """Apply database changes now, not in the next maintenance window (set it for a major upgrade)."""
    existing_db_host: str | None = None
    existing_db_port: int = 5432
    existing_db_secret_arn: str | None = None
    existing_db_security_group_id: str | None = None
    existing_db_secret_kms_key_arn: str | None = None

    # The function (the engine's settings come from Options).
    function_timeout_s: int = 300
    function_memory_mb: int = 512
    reserved_concurrency: int | None = None
    """None (default): no reservation; overlapping runs are safe, they queue on the engine's advisory
    lock. A number reserves that much of the account's concurrency, which Lambda refuses (after
    creating the function) when it would leave less than 10 unreserved: new accounts often have a
    limit of 10, where any reservation fails the first deploy."""
    upload_settle_s: float = 5.0
    """How long an upload event's run waits for two listings to agree (the function's UPLOAD_SETTLE_S)."""
    log_level: str = "INFO"
    log_retention_days: int = 365
    alarm_actions: tuple[str, ...] = ()
    """SNS topic ARNs the failed-runs alarm notifies; with neither this nor alarm_email it notifies no one."""
    alarm_email: str | None = None
    """An address to e-mail when the alarm fires: the stack creates a topic and subscribes it."""

    # Who may change a schema (README: "Who may change a schema").
    deployer_arn: str | None = None
    """The IAM role (or user) that runs ``terraform apply``; default: whoever plans, read at plan time."""
    migration_uploaders: tuple[str, ...] = ()
    """IAM role or user ARNs (``*`` allowed) that may write under the prefix besides the deploying principal."""
    allow_down: bool = False
    """Whether the function runs ``down`` when invoked with it (off: it refuses)."""
    migration_secret_arn: str | None = None
    """A secret of a migration role (JSON username/password) the function connects as, instead of the master user."""
    migration_secret_kms_key_arn: str | None = None
    db_ca_bundle: Path | None = None
    """PEM file of the CA that signs the database's certificate (RDS: global-bundle.pem): TLS verify-full."""

    # A fleet (README: "Fleets"): several new servers, migrated in stages by a state machine.
    fleet_servers: tuple[str, ...] = ()
    """Names of the fleet's servers (e.g. ``eu,us``): one new RDS server each, the first also the
    function's own; the deploy-time run migrates them canary first. Empty: one server, no fleet."""
    fleet_canary: int = 1
    """How many of the fleet's servers run first; the others start only once they succeeded."""
    fleet_max_concurrency: int = 4
    fleet_tolerated_failures: int = 0
    """How many servers after the canary may fail before the servers still to come are not started."""

    deploy_principal: str | None = None
    """Whose uploads start no run (the deploy's own: its invocation applies them): a role id
    (``AROA...``, every session) or user id; None: whoever runs the apply (its caller user_id)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = list(self._problems())
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def creates_network(self) -> bool:
        return self.existing_vpc_id is None

    @property
    def creates_database(self) -> bool:
        return self.existing_db_host is None

    def _parts(self) -> tuple[Part, ...]:
        """The parts of the stack that derive names from ``name``."""
        return (
            "migrations",
            *(("network",) if self.creates_network else ()),
            *(("database",) if self.creates_database else ()),
        )

    @classmethod
    def from_sources(cls, context: Mapping[str, Any], environ: Mapping[str, str]) -> StackConfig:
        """Defaults, then ``cdktf.json`` context values, then ``DBMIGRATE_*`` variables."""
        fields = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(context) - set(fields))
        if unknown:
            raise ConfigError(f"unknown setting(s) in the cdktf.json context: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for name in fields:
            if name in context:
                values[name] = _coerce(name, context[name], hints[name])
            env_name = ENV_PREFIX + name.upper()
            if environ.get(env_name, "").strip():
                values[name] = _coerce(env_name, environ[env_name].strip(), hints[name])
        for name in ("migrations_dir", "db_ca_bundle"):
            if values.get(name) is not None and not Path(values[name]).is_absolute():
                values[name] = ROOT / values[name]
        return cls(**values)

    def _problems(self) -> typing.Iterator[str]:
        if not NAME.match(self.name) or len(self.name) < 3:
            yield (
                f"name {self.name!r} must be at least 3 lower-case letters, digits and single hyphens, "
                "starting with a letter and ending with a letter or digit"
            )
        elif ENGINE_VERSION.match(self.db_engine_version):
            yield from name_problems(self.name, engine_version=self.db_engine_version, parts=self._parts())
        yield from tag_problems(self.tags)
        if not REGION.match(self.region):
            yield f"region {self.region!r} is not an AWS region name like eu-west-1"
        if self.run_mode not in typing.get_args(RunMode):
            yield f"run_mode {self.run_mode!r} must be one of {', '.join(typing.get_args(RunMode))}"
        if self.architecture not in typing.get_args(Architecture):
            yield f"architecture {self.architecture!r} must be one of {', '.join(typing.get_args(Architecture))}"
        if self.migrations_prefix and not self.migrations_prefix.endswith("/"):
            yield f"migrations_prefix {self.migrations_prefix!r} must end with '/' (or be empty)"
        if self.migrations_prefix.startswith("/"):
            yield "migrations_prefix must not start with '/'"
        yield from self._network_problems()
        yield from self._fleet_problems()
        yield from self._function_problems()
        yield from self._security_problems()
        if self.deploy_principal is not None and not PRINCIPAL_ID.match(self.deploy_principal):
            yield (
                f"deploy_principal {self.deploy_principal!r} must be the unique id of the deploying role or user "
                "(AROA... or AIDA..., optionally :<session name>): aws iam get-role --role-name NAME "
                "--query Role.RoleId"
            )
        if not ENGINE_VERSION.match(self.db_engine_version):
            yield f"db_engine_version {self.db_engine_version!r} must be like 16 or 16.4"

    def _network_problems(self) -> typing.Iterator[str]:
        try:
            network = ipaddress.ip_network(self.vpc_cidr)
            if not 16 <= network.prefixlen <= 24:
                yield f"vpc_cidr {self.vpc_cidr} must be a /16 to /24 network"
        except ValueError:
            yield f"vpc_cidr {self.vpc_cidr!r} is not a CIDR block"
        if self.existing_vpc_id is not None and len(self.existing_subnet_ids) < 1:
            yield "existing_vpc_id needs existing_subnet_ids (private subnets, ideally in two AZs)"
        if self.existing_vpc_id is None and self.existing_subnet_ids:
            yield "existing_subnet_ids needs existing_vpc_id"
        byo_db = (self.existing_db_host, self.existing_db_secret_arn, self.existing_db_security_group_id)
        if any(value is not None for value in byo_db) and not all(value is not None for value in byo_db):
            yield (
                "bring-your-own database needs existing_db_host, existing_db_secret_arn "
                "and existing_db_security_group_id"
            )
        if self.existing_db_host is not None and self.existing_vpc_id is None:
            yield "an existing database needs existing_vpc_id and existing_subnet_ids: the function must run in its VPC"

    def _fleet_problems(self) -> typing.Iterator[str]:
        if not self.fleet_servers:
            return
        for server in self.fleet_servers:
            if not FLEET_SERVER.match(server):
                yield f"fleet_servers: {server!r} must be 1-10 lower-case letters and digits, starting with a letter"
            elif ENGINE_VERSION.match(self.db_engine_version):
                yield from name_problems(
                    f"{self.name}-{server}", engine_version=self.db_engine_version, parts=("database",)
                )
        if len(set(self.fleet_servers)) != len(self.fleet_servers):
            yield "fleet_servers: a name is given twice"
        if not self.creates_database or self.migration_secret_arn is not None:
            yield (
                "fleet_servers creates the fleet's servers: it goes with neither existing_db_* nor "
                "migration_secret_arn (a fleet of your own servers: the DatabaseMigrations construct's fleet prop)"
            )
        if not 0 <= self.fleet_canary <= len(self.fleet_servers):
            yield f"fleet_canary {self.fleet_canary} must be 0 to the number of fleet_servers"
        if self.fleet_max_concurrency < 1 or self.fleet_tolerated_failures < 0:
            yield "fleet_max_concurrency must be at least 1 and fleet_tolerated_failures at least 0"
        if self.reserved_concurrency is None or self.fleet_max_concurrency < 1:
            return
        needed = Rollout(max_concurrency=self.fleet_max_concurrency).concurrency_needed
        if self.reserved_concurrency < needed:
            yield (
                f"reserved_concurrency {self.reserved_concurrency} throttles the fleet: fleet_max_concurrency "
                f"({self.fleet_max_concurrency}) servers run at once while the deploy-time run waits for them; "
                f"reserve at least {needed}, or none"
            )

    def _function_problems(self) -> typing.Iterator[str]:
        if self.log_level.upper() not in LOG_LEVELS:
            yield f"log_level must be one of {', '.join(LOG_LEVELS)}"
        if self.log_retention_days not in RETENTION_DAYS:
            yield f"log_retention_days {self.log_retention_days} is not a CloudWatch retention (e.g. 30, 90, 365)"
        if not 60 <= self.function_timeout_s <= 900:
            yield "function_timeout_s must be between 60 and 900 (the Lambda maximum)"
        if not 256 <= self.function_memory_mb <= 10240:
            yield "function_memory_mb must be between 256 and 10240"
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            yield "reserved_concurrency must be at least 1 (0 would throttle every run), or unset for no reservation"
        if not 1 <= self.connect_timeout_s <= self.function_timeout_s // 10:
            yield "connect_timeout_s must be at least 1 and at most a tenth of function_timeout_s"
        if self.lock_wait_s + self.min_time_left_s + self.connect_timeout_s >= self.function_timeout_s:
            yield (
                "lock_wait_s + min_time_left_s + connect_timeout_s must leave time to migrate within function_timeout_s"
            )
        if not 0 <= self.upload_settle_s <= 900:
            yield "upload_settle_s must be from 0 to 900"
        if self.db_max_allocated_storage_gb < self.db_allocated_storage_gb:
            yield "db_max_allocated_storage_gb must be at least db_allocated_storage_gb"
        if self.db_monitoring_interval_s not in (0, 1, 5, 10, 15, 30, 60):
            yield "db_monitoring_interval_s must be one of 0, 1, 5, 10, 15, 30, 60"

    def _security_problems(self) -> typing.Iterator[str]:
        principals = [("migration_uploaders", arn) for arn in self.migration_uploaders]
        if self.deployer_arn is not None:
            principals.append(("deployer_arn", self.deployer_arn))
        for label, arn in principals:
            if ARN_ASSUMED_ROLE.match(arn):
                yield (
                    f"{label}: {arn} is a session (assumed-role) ARN; "
                    "give the role itself: arn:aws:iam::<account>:role/<name>"
                )
            elif not IAM_PRINCIPAL_ARN.match(arn):
                yield f"{label}: {arn!r} is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)"
        if self.migration_secret_arn is not None and not SECRET_ARN.match(self.migration_secret_arn):
            yield (
                f"migration_secret_arn {self.migration_secret_arn!r} is not a Secrets Manager secret ARN "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )
        if self.db_ca_bundle is not None and not self.db_ca_bundle.is_file():
            yield (
                f"db_ca_bundle {self.db_ca_bundle} is not a file: download the RDS global bundle "
                "(global-bundle.pem, see the README) and point db_ca_bundle at it"
            )
        if self.alarm_email is not None and not EMAIL.match(self.alarm_email):
            yield f"alarm_email {self.alarm_email!r} is not an e-mail address"
        for arn in self.alarm_actions:
            if not arn.startswith("arn:"):
                yield f"alarm_actions: {arn!r} is not an ARN (an SNS topic's, for example)"


def _coerce(source: str, value: Any, hint: Any) -> Any:
    """Turn a context (JSON) or environment (string) value into the field's type."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        if value is None:
            return None
    origin = typing.get_origin(hint)
    kind = "tuple" if origin is tuple else "mapping" if Mapping in (origin, hint) else hint
    try:
        return _READERS.get(kind, str)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot read {value!r}: {exc}") from exc


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise ValueError("expected true or false")


def _number_of(kind: type[Any], expected: str) -> Any:
    def read(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {expected}")
        return kind(value)

    return read


def _items(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _pairs(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        return {key.strip(): val.strip() for key, val in pairs}
    return {str(key): str(val) for key, val in dict(value).items()}


# How a context or environment value becomes each kind of field (anything else: a string).
_READERS: dict[Any, Any] = {
    bool: _boolean,
    float: _number_of(float, "a number"),
    int: _number_of(int, "a whole number"),
    Path: Path,
    "tuple": _items,
    "mapping": _pairs,
}
