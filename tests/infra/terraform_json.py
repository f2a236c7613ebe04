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
    found: set[str] = set()
    for text in strings({key: value for key, value in stack.items() if key != "terraform"}):
        for expression in INTERPOLATION.findall(text):
            bare = STRING_LITERAL.sub('""', expression)
            for root, rest in TRAVERSAL.findall(bare):
                parts = [root, *rest.lstrip(".").split(".")]
                if root in BUILTIN_ROOTS:
                    continue
                if root == "data":
                    found.add(".".join(parts[:3]))
                elif root in {"var", "local", "module"}:
                    found.add(".".join(parts[:2]))
                else:
                    found.add(".".join(parts[:2]))
    for kind in ("resource", "data"):
        for blocks in stack.get(kind, {}).values():
            for block in blocks.values():
                for address in block.get("depends_on", []):
                    found.add(address)
    return found


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
