"""Every AWS name the stack derives from its ``name`` setting, with the limit AWS puts on it.

A name that is too long, or that breaks a service's pattern, would otherwise fail deep in
``terraform apply`` (after other resources exist). ``name_problems`` finds that at synth
time and says which derived name breaks which limit, and the longest name that fits.
The constructs build their names with the same templates; ``tests/infra/test_names.py``
checks every literal name in the synthesized stack is one listed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NAME_RULES",
    "SNAPSHOT_STAMP_LENGTH",
    "NameKind",
    "NameRule",
    "derived_names",
    "name_problems",
    "parameter_group_prefix",
    "postgres_family",
    "tag_problems",
]

Part = Literal["migrations", "network", "database", "fleet"]
"""Which part of the stack creates the resource: the construct always, the others when the stack does."""

TERRAFORM_SUFFIX = 26
"""Terraform's unique suffix after a ``*_prefix`` (a timestamp and a counter)."""
SNAPSHOT_STAMP_LENGTH = 14
"""The final snapshot identifier ends with the instance's creation time, ``YYYYMMDDhhmmss``."""

RDS_NAME = r"[a-z](?:-?[a-z0-9])*"
"""RDS identifiers: a letter first, letters, digits and single hyphens, no hyphen last."""
RDS_NAME_TEXT = "start with a letter and hold only letters, digits and single hyphens, not ending with one"


@dataclass(frozen=True)
class NameKind:
    """What AWS allows in one kind of name: its length limit, where that comes from, its pattern."""

    limit: int
    source: str
    """Where the limit comes from, said in the error."""
    pattern: str
    pattern_text: str


BUCKET_PREFIX = NameKind(
    63 - TERRAFORM_SUFFIX,
    "S3 bucket names have at most 63 characters and Terraform appends 26 to a bucket_prefix",
    r"(?!sthree-|amzn-s3-demo-|xn--)[a-z0-9][a-z0-9.-]*",
    "hold only lower-case letters, digits, dots and hyphens, and not start with sthree-, amzn-s3-demo- or xn--",
)
LETTERS_DIGITS_DASHES = "hold only letters, digits, hyphens and underscores"
LAMBDA_FUNCTION = NameKind(64, "Lambda function names", r"[A-Za-z0-9_-]+", LETTERS_DIGITS_DASHES)
IAM_ROLE = NameKind(64, "IAM role names", r"[\w+=,.@-]+", "hold only letters, digits and +=,.@_-")
SQS_QUEUE = NameKind(80, "SQS queue names", r"[A-Za-z0-9_-]+", LETTERS_DIGITS_DASHES)
SNS_TOPIC = NameKind(256, "SNS topic names", r"[A-Za-z0-9_-]+", LETTERS_DIGITS_DASHES)
LOG_GROUP = NameKind(512, "CloudWatch log group names", r"[.\-_/#A-Za-z0-9]+", "hold only letters, digits and ._-/#")
SECURITY_GROUP = NameKind(255, "EC2 security group names", r"(?!sg-).+", "not start with sg-")
ALARM = NameKind(255, "CloudWatch alarm names", r"[^\x00-\x1f]+", "hold only printable characters")
STATE_MACHINE = NameKind(80, "Step Functions state machine names", r"[A-Za-z0-9_-]+", LETTERS_DIGITS_DASHES)
KMS_ALIAS = NameKind(
    256,
    "KMS alias names",
    r"alias/(?!aws/)[A-Za-z0-9/_-]+",
    "hold only letters, digits and /_-, and not start with alias/aws/",
)
TAG_VALUE = NameKind(256, "tag values", r".+", "not be empty")
RDS_INSTANCE = NameKind(63, "RDS PostgreSQL instance identifiers", RDS_NAME, RDS_NAME_TEXT)
RDS_SUBNET_GROUP = NameKind(
    255,
    "RDS subnet group names",
    r"(?!default$)[0-9a-z_ .-]+",
    "hold only lower-case letters, digits, spaces and ._-, and not be default",
)
RDS_PARAMETER_GROUP_PREFIX = NameKind(
    255 - TERRAFORM_SUFFIX,
    "RDS parameter group names have at most 255 characters and Terraform appends 26 to a name_prefix",
    RDS_NAME + "-",
    "start with a letter and hold only letters, digits and single hyphens",
)
RDS_SNAPSHOT = NameKind(255, "RDS snapshot identifiers", RDS_NAME, RDS_NAME_TEXT)


@dataclass(frozen=True)
class NameRule:
    """One derived name: what it names, its template (``{name}`` and ``{family}``) and its kind's AWS limits."""

    label: str
    template: str
    kind: NameKind
    part: Part

    def render(self, name: str, family: str) -> str:
        stamp = "0" * SNAPSHOT_STAMP_LENGTH
        return self.template.format(name=name, family=family.replace(".", "-"), stamp=stamp)


NAME_RULES: tuple[NameRule, ...] = (
    NameRule("the bucket's bucket_prefix", "{name}-migrations-", BUCKET_PREFIX, "migrations"),
    NameRule("the Lambda function name", "{name}-migrate", LAMBDA_FUNCTION, "migrations"),
    NameRule("the function's IAM role name", "{name}-migrate", IAM_ROLE, "migrations"),
    NameRule("the dead-letter queue name", "{name}-migrate-failed", SQS_QUEUE, "migrations"),
    NameRule("the upload topic name", "{name}-migration-uploads", SNS_TOPIC, "migrations"),
    NameRule("the function's log group name", "/aws/lambda/{name}-migrate", LOG_GROUP, "migrations"),
    NameRule("the function's security group name", "{name}-migrate", SECURITY_GROUP, "migrations"),
    NameRule("the failed-runs alarm name", "{name}-migrate-failed-async-runs", ALARM, "migrations"),
    NameRule("the key's alias", "alias/{name}", KMS_ALIAS, "migrations"),
    NameRule("the flow logs' IAM role name", "{name}-flow-logs", IAM_ROLE, "network"),
    NameRule("the flow logs' log group name", "/vpc/{name}/flow-logs", LOG_GROUP, "network"),
    NameRule("the endpoints' security group name", "{name}-endpoints", SECURITY_GROUP, "network"),
    NameRule("the longest Name tag", "{name}-secretsmanager", TAG_VALUE, "network"),
    NameRule("the DB instance identifier", "{name}-db", RDS_INSTANCE, "database"),
    NameRule("the DB subnet group name", "{name}-db", RDS_SUBNET_GROUP, "database"),
    NameRule("the database's security group name", "{name}-db", SECURITY_GROUP, "database"),
    NameRule("the DB parameter group's name_prefix", "{name}-{family}-", RDS_PARAMETER_GROUP_PREFIX, "database"),
    NameRule("the final snapshot identifier", "{name}-db-final-{stamp}", RDS_SNAPSHOT, "database"),
    NameRule("the RDS log exports' log group name", "/aws/rds/instance/{name}-db/postgresql", LOG_GROUP, "database"),
    NameRule("the RDS upgrade log group name", "/aws/rds/instance/{name}-db/upgrade", LOG_GROUP, "database"),
    NameRule("the alarm topic name", "{name}-alarms", SNS_TOPIC, "migrations"),
    NameRule("the RDS monitoring role name", "{name}-rds-monitoring", IAM_ROLE, "database"),
    NameRule("the fleet state machine name", "{name}-fleet", STATE_MACHINE, "fleet"),
    NameRule("the fleet state machine's IAM role name", "{name}-fleet", IAM_ROLE, "fleet"),
    # Step Functions' vended-logs prefix keeps CloudWatch Logs' resource policy within its size limit.
    NameRule("the fleet's log group name", "/aws/vendedlogs/states/{name}-fleet", LOG_GROUP, "fleet"),
)


def postgres_family(engine_version: str) -> str:
    """The parameter group family of a PostgreSQL version: ``16.4`` -> ``postgres16``, ``9.6.2`` -> ``postgres9.6``."""
    parts = engine_version.split(".")
    major = parts[0] if int(parts[0]) >= 10 or len(parts) == 1 else f"{parts[0]}.{parts[1]}"
    return f"postgres{major}"


def parameter_group_prefix(name: str, family: str) -> str:
    """The parameter group's ``name_prefix``: a new family gets a new group (dots are not allowed)."""
    return next(rule for rule in NAME_RULES if "{family}" in rule.template).render(name, family)


def derived_names(name: str, *, engine_version: str = "16", parts: Sequence[Part] | None = None) -> dict[str, str]:
    """Each derived name by its label, for the given parts of the stack (all when ``None``)."""
    family = postgres_family(engine_version)
    return {rule.label: rule.render(name, family) for rule in NAME_RULES if parts is None or rule.part in parts}


def name_problems(
    name: str,
    *,
    engine_version: str = "16",
    parts: Sequence[Part] | None = None,
    rules: Sequence[NameRule] = NAME_RULES,
) -> Iterator[str]:
    """One message for the derived names that would be too long, and one per broken pattern."""
    family = postgres_family(engine_version)
    chosen = [rule for rule in rules if parts is None or rule.part in parts]
    too_long = []
    for rule in chosen:
        derived, kind = rule.render(name, family), rule.kind
        if len(derived) > kind.limit:
            too_long.append(
                f"{rule.label} {derived!r} would be {len(derived)} characters (AWS limit {kind.limit}: {kind.source})"
            )
        elif not re.fullmatch(kind.pattern, derived):
            yield (
                f"name {name!r} gives {rule.label} {derived!r}, which AWS refuses ({kind.source}): "
                f"it must {kind.pattern_text}. Fix: change the name"
            )
    if too_long:
        longest = min(rule.kind.limit - (len(rule.render(name, family)) - len(name)) for rule in chosen)
        yield (
            f"name {name!r} has {len(name)} characters, too many for the names derived from it: "
            + "; ".join(too_long)
            + f". Fix: use a name of at most {longest} characters"
        )


TAG_CHARACTERS = r"[\w .:/=+\-@]*"
"""What AWS accepts in tag keys and values (letters, digits, spaces and _.:/=+-@)."""


def tag_problems(tags: Mapping[str, str]) -> Iterator[str]:
    """Tags AWS would refuse at apply: keys of 1-128 characters not under ``aws:``, values of at most 256."""
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:") or not re.fullmatch(TAG_CHARACTERS, key):
            yield (
                f"tag key {key!r} is refused by AWS (1-128 letters, digits, spaces or _.:/=+-@, not starting "
                "with aws:). Fix: rename the tag"
            )
        if len(value) > 256 or not re.fullmatch(TAG_CHARACTERS, value):
            yield (
                f"tag {key!r}: its value of {len(value)} characters is refused by AWS (at most 256 letters, digits, "
                "spaces or _.:/=+-@). Fix: shorten or change the value"
            )
