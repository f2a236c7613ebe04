"""Reading a synthesized cdktf stack (``cdk.tf.json``) the way Terraform would use it.

The local deploy takes every fact from here (bucket, objects and their files, the
function's package, handler, timeout and environment, the invocation's input) so it
replays what was synthesized, never a second hand-written copy of the configuration.
Terraform references (``${aws_s3_bucket.b.id}``) are resolved against the values of
the local stand-ins; a reference with no stand-in is an error that names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Resource", "SynthesizedStack", "UnresolvedReferenceError", "find_stack_file"]

REFERENCE = re.compile(r"\$\{([^}]*)\}")


class UnresolvedReferenceError(RuntimeError):
    """A value refers to something the local deploy has no stand-in for."""


@dataclass(frozen=True)
class Resource:
    """One resource of the stack: its type, its logical name, and its arguments."""

    type: str
    name: str
    args: Mapping[str, Any]

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}"


def find_stack_file(outdir: Path) -> Path:
    """The one ``cdk.tf.json`` under ``outdir/stacks``; an error naming what was found otherwise."""
    found = sorted(outdir.glob("stacks/*/cdk.tf.json"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one synthesized stack under {outdir}/stacks, found {len(found)}")
    return found[0]


class SynthesizedStack:
    """A synthesized stack and the values its references resolve to locally."""

    def __init__(self, stack_file: Path) -> None:
        self.file = stack_file
        self.folder = stack_file.parent
        self.document: dict[str, Any] = json.loads(stack_file.read_text(encoding="utf-8"))
        self.values: dict[str, Any] = {}

    def resources(self, resource_type: str) -> list[Resource]:
        """Every resource of one type, in the order they were synthesized."""
        found = self.document.get("resource", {}).get(resource_type, {})
        return [Resource(resource_type, name, args) for name, args in found.items()]

    def data_sources(self, data_type: str) -> list[Resource]:
        """Every data source of one type (its address is ``data.<type>.<name>``)."""
        found = self.document.get("data", {}).get(data_type, {})
        return [Resource(f"data.{data_type}", name, args) for name, args in found.items()]

    def one(self, resource_type: str) -> Resource:
        """The single resource of a type; an error if there are none or several."""
        found = self.resources(resource_type)
        if len(found) != 1:
            raise ValueError(f"the stack has {len(found)} {resource_type} resources; the local deploy plays one")
        return found[0]

    def region(self) -> str:
        providers = self.document.get("provider", {}).get("aws", [{}])
        region: str = providers[0].get("region", "us-east-1")
        return region

    def path(self, relative: str) -> Path:
        """A file the stack names (assets are relative to the stack's folder)."""
        return (self.folder / relative).resolve()

    def stand_in(self, resource: Resource, attribute: str, value: Any) -> None:
        """Record the local value of ``resource.attribute`` (e.g. an ARN moto gave)."""
        self.values[f"{resource.address}.{attribute}"] = value

    def resolve(self, value: Any) -> Any:
        """``value`` with every reference replaced by its stand-in, recursively."""
        if isinstance(value, str):
            whole = REFERENCE.fullmatch(value)
            if whole:
                return self._lookup(whole.group(1))
            return REFERENCE.sub(lambda match: str(self._lookup(match.group(1))), value)
        if isinstance(value, Mapping):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def _lookup(self, expression: str) -> Any:
        if expression == "timestamp()":
            return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if expression in self.values:
            return self.values[expression]
        raise UnresolvedReferenceError(
            f"${{{expression}}} has no local stand-in: the local deploy plays the bucket, its objects, "
            "the function, the database secret, the topic, the queues, the caller and the invocation"
        )
