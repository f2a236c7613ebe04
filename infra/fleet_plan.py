"""What a fleet is: its targets, how it rolls out (canary, waves, concurrency, tolerance), its stages.

Pure data, validated when built: ``stages(targets, rollout)`` refuses a fleet that cannot run
(no targets, names used twice, a canary naming targets not in the fleet) with every problem
named. ``infra.fleet_definition`` turns the stages into the state machine's definition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from dbmigrate.errors import ConfigError

__all__ = ["FleetTarget", "Retry", "Rollout", "Stage", "TenantGroup", "Tolerance", "stages"]

TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
DATABASE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_INVOCATIONS = 50


@dataclass(frozen=True)
class TenantGroup:
    """Databases found on the target's server when it runs; passed to the function as given."""

    name: str
    match: str
    """Which databases belong to the group (the function decides how it reads this)."""


@dataclass(frozen=True)
class FleetTarget:
    """One unit of the fleet: a server, the secret the function connects with, and its databases."""

    name: str
    host: str
    secret_arn: str
    port: int = 5432
    databases: tuple[str, ...] = ()
    """The databases to migrate; empty with no ``tenant_group``: every database of the layout."""
    tenant_group: TenantGroup | None = None

    def payload(self) -> dict[str, Any]:
        """The ``target`` of the task's payload."""
        target: dict[str, Any] = {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "secret_arn": self.secret_arn,
        }
        if self.databases:
            target["databases"] = list(self.databases)
        if self.tenant_group is not None:
            target["tenant_group"] = {"name": self.tenant_group.name, "match": self.tenant_group.match}
        return target

    def problems(self) -> list[str]:
        found = []
        if not TARGET_NAME.fullmatch(self.name):
            found.append(
                f"fleet target name {self.name!r} must be 1-80 letters, digits and _.- (starting with a letter or "
                "digit). Fix: rename the target"
            )
        if self.databases and self.tenant_group is not None:
            found.append(f"fleet target {self.name!r} lists databases and a tenant group. Fix: give one of the two")
        bad = [name for name in self.databases if not DATABASE.fullmatch(name)]
        if bad:
            found.append(f"fleet target {self.name!r}: database names {bad} do not match {DATABASE.pattern}")
        return found


@dataclass(frozen=True)
class Tolerance:
    """How many failed wave targets the fleet tolerates: a ``count``, or a ``percent`` of the wave targets."""

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ConfigError("Tolerance: give a count or a percent, not both and not neither")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"Tolerance: count {self.count} is negative. Fix: 0 or more")
        if self.percent is not None and not 0 <= self.percent <= 100:
            raise ConfigError(f"Tolerance: percent {self.percent} is outside 0-100")

    def tolerated(self, targets: int) -> int:
        """The failures tolerated among ``targets``: a percentage rounds down (10% of 9 is 0)."""
        if self.count is not None:
            return self.count
        return int(Fraction(str(self.percent)) * targets // 100)

    def describe(self, targets: int) -> str:
        if self.count is not None:
            return f"a count of {self.count}"
        return f"{self.percent:g}% of {targets}"


@dataclass(frozen=True)
class Retry:
    """Retries of a call that Lambda refused or lost (throttling, service errors), with backoff."""

    interval_s: int = 2
    max_attempts: int = 6
    backoff_rate: float = 2.0
    max_delay_s: int = 60


@dataclass(frozen=True)
class Rollout:
    """How the fleet rolls out: canary first, then waves under a concurrency limit and a tolerance."""

    canary: int | tuple[str, ...] = 1
    """The first N targets, or the targets named; 0 or (): no canary stage."""
    wave_size: int | None = None
    """Targets per wave after the canary; ``None``: one wave of all of them."""
    max_concurrency: int = 4
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(count=0))
    max_invocations: int = 8
    """Invocations of one target before it is reported unfinished (each continues where the last stopped)."""
    retry: Retry = field(default_factory=Retry)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigError(f"Rollout: max_concurrency {self.max_concurrency} must be at least 1")
        if self.wave_size is not None and self.wave_size < 1:
            raise ConfigError(f"Rollout: wave_size {self.wave_size} must be at least 1 (None: one wave)")
        if not 1 <= self.max_invocations <= MAX_INVOCATIONS:
            raise ConfigError(f"Rollout: max_invocations {self.max_invocations} must be 1-{MAX_INVOCATIONS}")
        if isinstance(self.canary, int) and self.canary < 0:
            raise ConfigError(f"Rollout: canary {self.canary} must be 0 or more")

    @property
    def concurrency_needed(self) -> int:
        """Invocations of the function at once during a deploy: ``max_concurrency`` targets and the
        deploy-time invocation that waits for them. A reservation below it throttles the fleet."""
        return self.max_concurrency + 1


@dataclass(frozen=True)
class Stage:
    """One Map of the state machine: its key in the state data, its title, its targets."""

    key: str
    title: str
    targets: tuple[FleetTarget, ...]

    @property
    def is_canary(self) -> bool:
        return self.key == "canary"


def stages(targets: Sequence[FleetTarget], rollout: Rollout) -> list[Stage]:
    """The canary (when there is one) and the waves, in order; refuses a fleet that cannot run."""
    problems = [problem for target in targets for problem in target.problems()]
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"fleet target names {duplicates} are used twice. Fix: give each target its own name")
    if not targets:
        problems.append("the fleet has no targets. Fix: list at least one")
    if isinstance(rollout.canary, int):
        if rollout.canary > len(targets):
            problems.append(f"canary of {rollout.canary} targets, but the fleet has {len(targets)}")
        canary = list(targets[: rollout.canary])
    else:
        unknown = sorted(set(rollout.canary) - set(names))
        if unknown:
            problems.append(f"canary targets {unknown} are not in the fleet. Fix: name targets of the fleet")
        canary = [target for target in targets if target.name in rollout.canary]
    if problems:
        raise ConfigError("fleet: " + "; ".join(problems))
    rest = [target for target in targets if target not in canary]
    size = rollout.wave_size or max(len(rest), 1)
    waves = [tuple(rest[start : start + size]) for start in range(0, len(rest), size)]
    found = [Stage("canary", "Canary", tuple(canary))] if canary else []
    return found + [Stage(f"wave_{index}", f"Wave {index}", wave) for index, wave in enumerate(waves, 1)]
