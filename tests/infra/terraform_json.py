"""Reading a synthesized cdktf stack: resources by type, and the references between them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

INTERPOLATION = re.compile(r"\$\{((?:[^{}]|\{[^{}]*\})*)\}")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
# A traversal that starts an expression part: not after a dot, bracket or word character.
TRAVERSAL = re.compile(r"(?<![\w.\]\-])([a-zA-Z_][\w-]*)((?:\.[a-zA-Z_][\w-]*)+)")
BUILTIN_ROOTS = {"path", "terraform", "count", "each", "self"}

Stack = dict[str, Any]


def resources(stack: Stack, resource_type: str) -> dict[str, dict[str, Any]]:
    """Every resource of one type, by its logical name."""
    found: dict[str, dict[str, Any]] = stack.get("resource", {}).get(resource_type, {})
    return found


def only(stack: Stack, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of a type (fails when there are none or several)."""
    items = resources(stack, resource_type)
    assert len(items) == 1, f"expected one {resource_type}, found {sorted(items)}"
    return next(iter(items.items()))


def ref(resource_type: str, name: str, attribute: str) -> str:
    return f"${{{resource_type}.{name}.{attribute}}}"


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "//":
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def references(stack: Stack) -> set[str]:
    """Every address the stack refers to: ``type.name``, ``data.type.name``, ``var.x``, ``local.x``."""
    found = expression_references({key: value for key, value in stack.items() if key != "terraform"})
    for kind in ("resource", "data"):
        for blocks in stack.get(kind, {}).values():
            for settings in blocks.values():
                found.update(settings.get("depends_on", []))
    return found


def expression_references(value: Any) -> set[str]:
    """The addresses that the ``${...}`` expressions inside ``value`` refer to (not ``depends_on``)."""
    found: set[str] = set()
    for text in strings(value):
        for expression in INTERPOLATION.findall(text):
            bare = STRING_LITERAL.sub('""', expression)
            for root, rest in TRAVERSAL.findall(bare):
                parts = [root, *rest.lstrip(".").split(".")]
                if root in BUILTIN_ROOTS:
                    continue
                found.add(".".join(parts[:3] if root == "data" else parts[:2]))
    return found


def block(stack: Stack, address: str) -> dict[str, Any]:
    """The block of a resource (``type.name``) or data source (``data.type.name``)."""
    parts = address.split(".")
    kind, resource_type, name = ("data", parts[1], parts[2]) if parts[0] == "data" else ("resource", *parts)
    found: dict[str, Any] = stack[kind][resource_type][name]
    return found


def direct_dependencies(stack: Stack, address: str) -> set[str]:
    """What one resource waits for: the addresses its expressions refer to, and its ``depends_on``."""
    settings = block(stack, address)
    found = expression_references({key: value for key, value in settings.items() if key != "depends_on"})
    found.update(settings.get("depends_on", []))
    return {item for item in found if item.split(".")[0] not in {"var", "local", "module"}}


def dependency_closure(stack: Stack, address: str) -> set[str]:
    """Everything Terraform creates before ``address``: its dependencies, followed transitively."""
    seen: set[str] = set()
    pending = [address]
    while pending:
        for item in direct_dependencies(stack, pending.pop()) - seen:
            seen.add(item)
            pending.append(item)
    return seen


def addresses(stack: Stack) -> set[str]:
    """Everything a reference may point at."""
    defined = {f"{kind}.{name}" for kind, blocks in stack.get("resource", {}).items() for name in blocks}
    defined |= {f"data.{kind}.{name}" for kind, blocks in stack.get("data", {}).items() for name in blocks}
    defined |= {f"var.{name}" for name in stack.get("variable", {})}
    defined |= {f"local.{name}" for name in stack.get("locals", {})}
    defined |= {f"module.{name}" for name in stack.get("module", {})}
    return defined


def unresolved(stack: Stack) -> set[str]:
    return references(stack) - addresses(stack)
