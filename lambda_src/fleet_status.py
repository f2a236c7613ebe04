"""The fleet for people: the status or plan of every target, as ``dbmigrate fleet status|plan`` asks.

``{"action": "fleet-status"}`` or ``{"action": "fleet-plan", "manifest": [...]}`` (the caller's
files, as ``dbmigrate plan --function`` sends them; without one, the bucket's). The function
reads the fleet's targets from its state machine (DescribeStateMachine: they are fixed when
the stack is synthesized, each stage's in its ``"<stage> targets"`` state, see
``infra/fleet_definition.py``) and looks at each target's server as a run of it would:
its own secret, its databases or its tenant group's (found on the server now). Nothing is
changed and no lock is taken.

The answer, one document::

    {"action": "fleet-status", "state_machine": "arn:...",
     "targets": [{"target": "eu", "stage": "canary", "server": "db.eu:5432",
                  "databases": [<a database's status or plan>, ...],
                  "problems": [...], "errors": [<error document>, ...]}, ...],
     "problems": [{"target": "eu", "message": "eu: ...", ...}, ...]}

A target that cannot be looked at (its server unreachable, its secret unreadable) has its error in
``errors`` and the others are still looked at; so does a target the invocation had no time left for.
The handler looks at several targets at once (``LOOKS_AT_ONCE``). ``problems`` gathers every
target's, each naming its target: a caller exits non-zero when there is one. A database's status is
a summary (versions, no history rows) so that a large fleet fits the 6 MB a Lambda answer may hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dbmigrate.errors import ConfigError, MigrationError
from dbmigrate.manifest import parse_manifest
from dbmigrate.report import target_problem
from fleet_target import TargetRequest, parse_target

__all__ = ["LOOKS", "FleetLook", "StagedTarget", "fleet_document", "parse_look", "target_document", "targets_of"]

View = Literal["status", "plan"]
LOOKS: dict[str, View] = {"fleet-status": "status", "fleet-plan": "plan"}
FIELDS = frozenset({"action", "manifest"})
TARGETS_STATE = " targets"
"""The suffix of the states that hold a stage's targets: ``"<title> targets"`` (``infra/fleet_definition.py``,
``infra/fleet_plan.stages``: a stage titled "Wave 2" is the report's ``wave_2``)."""
SUMMARY = ("name", "exists", "current_version", "pending", "changed", "different", "missing", "out_of_order")


@dataclass(frozen=True)
class FleetLook:
    """A look at every target of the fleet: ``view`` status or plan, against ``manifest`` (None: the bucket)."""

    view: View
    manifest: Mapping[str, str] | None = None
    trigger: str = "invoke"

    def log_fields(self) -> dict[str, Any]:
        files = len(self.manifest) if self.manifest is not None else "the bucket"
        return {"action": f"fleet-{self.view}", "trigger": self.trigger, "files": files}


@dataclass(frozen=True)
class StagedTarget:
    """One target of the fleet, and the stage it runs in (as the fleet report names it)."""

    stage: str
    target: TargetRequest

    @property
    def server(self) -> str:
        return f"{self.target.host}:{self.target.port}"


def parse_look(payload: Mapping[str, Any], trigger: str) -> FleetLook:
    view = LOOKS[str(payload["action"])]
    unknown = sorted(set(payload) - FIELDS)
    if unknown or (view == "status" and "manifest" in payload):
        allowed = "action" if view == "status" else "action and manifest"
        raise ConfigError(
            f"fleet-{view} takes only {allowed}, not {', '.join(unknown) or 'manifest'}",
            hint=f'e.g. {{"action": "fleet-{view}"}}; this is what `dbmigrate fleet {view} --function NAME` sends',
        )
    manifest = parse_manifest(payload["manifest"]) if payload.get("manifest") is not None else None
    return FleetLook(view, manifest, trigger)


def targets_of(definition: Mapping[str, Any], state_machine: str) -> list[StagedTarget]:
    """The targets in the definition, stage by stage in the order they run; ConfigError when it has none."""
    states = definition.get("States")
    staged = [
        StagedTarget(_stage_key(name.removesuffix(TARGETS_STATE)), parse_target({"target": payload}))
        for name, state in (states.items() if isinstance(states, Mapping) else ())
        if name.endswith(TARGETS_STATE) and isinstance(state, Mapping) and state.get("Type") == "Pass"
        for payload in _listed(state.get("Result"))
    ]
    if not staged:
        raise ConfigError(
            f"the state machine {state_machine} holds no fleet targets",
            hint="FLEET_STATE_MACHINE_ARN must name the fleet's state machine, as the stack sets it",
        )
    return staged


def _stage_key(title: str) -> str:
    """The stage as the fleet report names it: "Canary" is ``canary``, "Wave 2" ``wave_2``."""
    return title.lower().replace(" ", "_")


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def target_document(
    staged: StagedTarget, view: str, reports: Sequence[Mapping[str, Any]], errors: Sequence[MigrationError]
) -> dict[str, Any]:
    """One target's part of the answer, from the reports of its runs and the errors that stopped them."""
    databases = [database for report in reports for database in report["databases"]]
    return {
        "target": staged.target.name,
        "stage": staged.stage,
        "server": staged.server,
        "databases": databases if view == "plan" else [_summary(database) for database in databases],
        "problems": [problem for report in reports for problem in report.get("problems", [])],
        "errors": [error.to_dict() for error in errors],
    }


def _summary(database: Mapping[str, Any]) -> dict[str, Any]:
    """A database's status without its history rows: what is applied, pending and wrong."""
    summary = {name: database[name] for name in SUMMARY if name in database}
    summary["applied"] = len(database.get("applied", []))
    summary["unfinished"] = [row["version"] for row in database.get("unfinished", [])]
    return summary


def fleet_document(view: str, state_machine: str, targets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The answer: every target's document, and their problems (errors included), each naming its target."""
    return {
        "action": f"fleet-{view}",
        "state_machine": state_machine,
        "targets": list(targets),
        "problems": [
            target_problem(target["target"], problem)
            for target in targets
            for problem in (*target["problems"], *target["errors"])
        ],
    }
