"""The migration Lambda's configuration: its environment variables, and the database secret.

The stack sets ``MIGRATIONS_BUCKET`` (and ``MIGRATIONS_PREFIX``), the credentials as
``DB_SECRET_ARN`` (an RDS-managed master secret; host and port from ``DB_HOST`` and
``DB_PORT`` or from the secret) or ``DATABASE_URL`` (a template with ``{database}``),
``DB_SSLMODE``, ``DB_SSLROOTCERT`` (the CA bundle for ``verify-ca``/``verify-full``; a
relative path is inside the package), ``ALLOW_DOWN`` (``true`` lets an invocation run
``down``), ``UPLOAD_SETTLE_S``, ``LOG_LEVEL`` and ``DEPLOY_PRINCIPAL`` (the unique id of
who deploys, whose own uploads start no run: the deploy-time invocation applies them),
and each engine setting (``dbmigrate.config.Options``) under its variable, e.g.
``LOCK_WAIT_S``; an engine setting left unset keeps the engine's default. Anything missing
or malformed is a ConfigError naming the variable.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from aws_clients import aws_client
from dbmigrate.config import Options, Settings, options, url_template
from dbmigrate.errors import ConfigError, DatabaseConnectError, spell_neutral
from dbmigrate.s3source import normalize_prefix

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["VARIABLES", "FunctionEnv", "build_settings", "explain_tls_failure", "spell"]

PACKAGE_ROOT = Path(__file__).resolve().parent

# The function's own settings (FunctionEnv's fields) and their variables.
OWN_VARIABLES = {
    "bucket": "MIGRATIONS_BUCKET",
    "prefix": "MIGRATIONS_PREFIX",
    "secret_arn": "DB_SECRET_ARN",
    "database_url": "DATABASE_URL",
    "db_host": "DB_HOST",
    "db_port": "DB_PORT",
    "db_sslmode": "DB_SSLMODE",
    "db_sslrootcert": "DB_SSLROOTCERT",
    "allow_down": "ALLOW_DOWN",
    "upload_settle_s": "UPLOAD_SETTLE_S",
    "log_level": "LOG_LEVEL",
    "deploy_principal": "DEPLOY_PRINCIPAL",
    "fleet_state_machine_arn": "FLEET_STATE_MACHINE_ARN",
}
VARIABLES = (*OWN_VARIABLES.values(), *(option.variable for option in options()))

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_MODES = ("verify-ca", "verify-full")
STATE_MACHINE_ARN = re.compile(r"arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}")
BOOLEANS = {"true": True, "false": False}
# libpq's words when it refuses the server's certificate or its name.
TLS_VERIFY_FAILURES = ("certificate verify failed", "does not match host name", "server certificate for")


@dataclass(frozen=True)
class FunctionEnv(Options):
    """The function's environment, parsed and checked: its own settings and the engine's; no I/O."""

    bucket: str
    prefix: str = ""  # normalized: empty or ending in "/"
    secret_arn: str | None = None
    database_url: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    db_sslmode: str | None = None
    db_sslrootcert: Path | None = None
    allow_down: bool = False
    upload_settle_s: float = 5.0
    log_level: str = "INFO"
    deploy_principal: str | None = None
    fleet_state_machine_arn: str | None = None
    """The fleet's state machine (``infra/fleet.py``): the deploy-time run and uploads start it."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FunctionEnv:
        """Read the variables the stack sets; empty values count as unset."""
        env = {name: value.strip() for name, value in environ.items() if value.strip()}
        if "MIGRATIONS_BUCKET" not in env:
            raise ConfigError("MIGRATIONS_BUCKET is not set", hint="set it to the bucket that holds the migrations")
        if ("DB_SECRET_ARN" in env) == ("DATABASE_URL" in env):
            raise ConfigError(
                "set exactly one of DB_SECRET_ARN and DATABASE_URL "
                f"({'both are' if 'DB_SECRET_ARN' in env else 'neither is'} set)",
                hint="DB_SECRET_ARN: the database's Secrets Manager secret; DATABASE_URL: "
                "postgresql://user:password@host:5432/{database}",
            )
        log_level = env.get("LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
        sslmode = env.get("DB_SSLMODE")
        if sslmode is not None and sslmode not in SSL_MODES:
            raise ConfigError(f"DB_SSLMODE must be one of {', '.join(SSL_MODES)}, not {sslmode!r}")
        allow_down = env.get("ALLOW_DOWN", "false").lower()
        if allow_down not in BOOLEANS:
            raise ConfigError(f"ALLOW_DOWN must be true or false, not {env['ALLOW_DOWN']!r}")
        return cls(
            bucket=env["MIGRATIONS_BUCKET"],
            prefix=normalize_prefix(env.get("MIGRATIONS_PREFIX", "")),
            secret_arn=env.get("DB_SECRET_ARN"),
            database_url=env.get("DATABASE_URL"),
            db_host=env.get("DB_HOST"),
            db_port=_number(env, "DB_PORT", int, high=65535, low=1),
            db_sslmode=sslmode,
            db_sslrootcert=_ca_bundle(env, sslmode),
            allow_down=BOOLEANS[allow_down],
            upload_settle_s=_number(env, "UPLOAD_SETTLE_S", float, cls.upload_settle_s, low=0, high=900),
            log_level=log_level,
            deploy_principal=env.get("DEPLOY_PRINCIPAL"),
            fleet_state_machine_arn=_state_machine_arn(env),
            **{o.name: o.parse(env[o.variable], o.variable) for o in options() if o.variable in env},
        )


def _state_machine_arn(env: Mapping[str, str]) -> str | None:
    arn = env.get("FLEET_STATE_MACHINE_ARN")
    if arn is not None and not STATE_MACHINE_ARN.fullmatch(arn):
        raise ConfigError(
            f"FLEET_STATE_MACHINE_ARN {arn!r} is not a state machine's ARN",
            hint="arn:aws:states:<region>:<account>:stateMachine:<name>; the stack sets it from the fleet's name",
        )
    return arn


def _ca_bundle(env: Mapping[str, str], sslmode: str | None) -> Path | None:
    """DB_SSLROOTCERT as a path (relative: inside the package), checked to hold certificates."""
    if "DB_SSLROOTCERT" not in env:
        if sslmode in VERIFYING_MODES:
            raise ConfigError(
                f"DB_SSLMODE={sslmode} needs DB_SSLROOTCERT, the CA bundle to verify the server with",
                hint="set the stack's db_ca_bundle to the RDS global bundle (global-bundle.pem, see the README)",
            )
        return None
    path = Path(env["DB_SSLROOTCERT"])
    path = path if path.is_absolute() else PACKAGE_ROOT / path
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"DB_SSLROOTCERT {env['DB_SSLROOTCERT']}: no CA certificates can be read from {path} ({exc})",
            hint="package the RDS global bundle (global-bundle.pem) with the stack's db_ca_bundle setting",
        ) from exc
    return path


def explain_tls_failure(exc: DatabaseConnectError, env: FunctionEnv) -> DatabaseConnectError:
    """The error to show: a clearer one when libpq refused the server's certificate (unknown CA, or host name)."""
    text = str(exc)
    if env.db_sslrootcert is None or not any(marker in text for marker in TLS_VERIFY_FAILURES):
        return exc
    return DatabaseConnectError(
        f"TLS verification of the database server failed ({env.db_sslmode}, CA bundle {env.db_sslrootcert}): {text}",
        database=exc.database,
        hint="the server's certificate must be signed by a CA in DB_SSLROOTCERT (for RDS: the global bundle "
        "global-bundle.pem, see the README) and, with verify-full, name DB_HOST; fix the stack's db_ca_bundle "
        "or connect to the endpoint's own host name",
    )


def _number(  # noqa: PLR0913  keyword-only bounds beside the variable's name, kind and default
    env: Mapping[str, str],
    name: str,
    kind: type[Any],
    default: Any = None,
    *,
    low: float = -math.inf,
    high: float = math.inf,
) -> Any:
    """A number from the environment; the engine's own (Settings) are bounded again there.

    nan and infinities are never numbers here; ``low``/``high`` bound what only the
    function reads (the port, the upload settle time).
    """
    if name not in env:
        return default
    expected = "a whole number" if kind is int else "a number"
    try:
        value = kind(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be {expected}, not {env[name]!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {env[name]!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be {expected} from {low:g} to {high:g}, not {env[name]!r}")
    return value


def build_settings(
    env: FunctionEnv, *, applied_by: str, secrets_client: SecretsManagerClient | None = None
) -> Settings:
    """Settings for the engine; with DB_SECRET_ARN set, reads the secret (one API call)."""
    if env.database_url is not None:
        template = env.database_url
    else:
        assert env.secret_arn is not None
        template = _template_from_secret(env, secrets_client)
    return Settings(template, **{o.name: getattr(env, o.name) for o in options()}, applied_by=applied_by)


def spell(name: str) -> str:
    """A setting as the function's user sets it: its variable, and the stack's setting."""
    if name == "source":
        return "MIGRATIONS_BUCKET and MIGRATIONS_PREFIX (the stack's migrations_prefix)"
    if name == "time_budget":
        return "more time (the stack's function_timeout_s)"
    option = next((o for o in options() if o.name == name), None)
    if option is None:
        return spell_neutral(name)
    value = "=true" if option.kind is bool else ""
    return f"{option.variable}{value} (the stack's {option.name})"


def _template_from_secret(env: FunctionEnv, client: SecretsManagerClient | None) -> str:
    arn = env.secret_arn or ""
    secret = _read_secret(arn, client or aws_client("secretsmanager"))
    user, password = secret.get("username"), secret.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
        raise ConfigError(
            f"the secret {arn} has no username and password",
            hint="use the RDS-managed master secret, or a JSON secret with username and password",
        )
    host = env.db_host or secret.get("host")
    port = env.db_port or secret.get("port") or 5432
    if not isinstance(host, str) or not host:
        raise ConfigError(
            f"no database host: DB_HOST is not set and the secret {arn} has no host",
            hint="set DB_HOST to the database endpoint's address (the RDS-managed secret holds none)",
        )
    query = {"sslmode": env.db_sslmode} if env.db_sslmode else {}
    if env.db_sslrootcert is not None:
        query["sslrootcert"] = str(env.db_sslrootcert)
    return url_template(user, password, host, str(port), **query)


def _read_secret(arn: str, client: SecretsManagerClient) -> dict[str, Any]:
    try:
        text = client.get_secret_value(SecretId=arn).get("SecretString")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        hints = {
            "ResourceNotFoundException": "set DB_SECRET_ARN to the ARN of the database's secret",
            "AccessDeniedException": f"grant the function's role secretsmanager:GetSecretValue on {arn} "
            "(and kms:Decrypt on the secret's KMS key)",
        }
        raise ConfigError(f"cannot read the secret {arn}: {code}", hint=hints.get(code)) from exc
    except BotoCoreError as exc:
        raise ConfigError(
            f"cannot read the secret {arn}: Secrets Manager did not answer ({type(exc).__name__})",
            hint="the function cannot reach Secrets Manager: a Lambda in a VPC needs a Secrets Manager "
            "interface endpoint (com.amazonaws.<region>.secretsmanager) with private DNS, or a NAT",
        ) from exc
    try:
        secret = json.loads(text or "")
    except ValueError:  # the error would quote the secret's text: drop it
        secret = None
    if not isinstance(secret, dict):
        raise ConfigError(
            f"the secret {arn} is not a JSON object",
            hint='store {"username": ..., "password": ...} (the RDS-managed format)',
        ) from None
    logging.getLogger(__name__).debug("database secret read", extra={"secret_arn": arn})
    return secret
