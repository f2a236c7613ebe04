"""Every tests/integration module that reaches PostgreSQL says whether its outcome depends on the version.

`make test` runs the modules marked ``every_pg_version`` on the edge versions too (PG_EDGES,
``tools/pg/matrix.sh -m every_pg_version``); a module marked ``any_pg_version("reason")`` runs on
the default version only. A module that reaches the server without either would silently drop
out of the edges: this test names it. "Reaches the server" is read from the source: a test or
fixture of the module takes ``pg_server`` or a fixture that does (``pg``, ``cli``, the module's
own), or the module starts an ``EmbeddedPostgres`` of its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
INTEGRATION = TESTS / "integration"
# Where the fixtures the integration modules share are defined (conftests and plugins).
SHARED = (TESTS / "conftest.py", INTEGRATION / "conftest.py", INTEGRATION / "aws.py")
SERVER_FIXTURE = "pg_server"
EVERY, ANY = "every_pg_version", "any_pg_version"


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


def _name(node: ast.expr) -> str | None:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None


def _is_fixture(function: ast.FunctionDef) -> bool:
    return any(_name(d.func if isinstance(d, ast.Call) else d) == "fixture" for d in function.decorator_list)


def _parameters(function: ast.FunctionDef) -> set[str]:
    arguments = function.args
    return {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}


def server_fixtures(trees: Iterable[ast.Module]) -> set[str]:
    """The fixtures of ``trees`` that take the server, directly or through another one of them."""
    fixtures = [f for tree in trees for f in _functions(tree) if _is_fixture(f)]
    reaching = {SERVER_FIXTURE}
    grown = True
    while grown:
        before = len(reaching)
        reaching |= {f.name for f in fixtures if _parameters(f) & reaching}
        grown = len(reaching) > before
    return reaching


def reaches_the_server(tree: ast.Module, shared: Iterable[ast.Module]) -> bool:
    fixtures = server_fixtures([*shared, tree])
    if any(_parameters(f) & fixtures for f in _functions(tree)):
        return True
    return any(isinstance(n, ast.Call) and _name(n.func) == "EmbeddedPostgres" for n in ast.walk(tree))


def version_mark(tree: ast.Module) -> str | None:
    """The module's version mark (``every_pg_version``, ``any_pg_version``), what is wrong with it, or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(_name(target) == "pytestmark" for target in node.targets):
            found, called = [], set()
            for mark in ast.walk(node.value):  # breadth first: a call before the name it calls
                if isinstance(mark, ast.Call) and _name(mark.func) == ANY:
                    called.add(id(mark.func))
                    reason = mark.args[0] if mark.args else None
                    given = isinstance(reason, ast.Constant) and isinstance(reason.value, str) and reason.value.strip()
                    found.append(ANY if given else f"{ANY} without a reason")
                elif isinstance(mark, ast.Attribute) and mark.attr == ANY and id(mark) not in called:
                    found.append(f"{ANY} without a reason")
                elif isinstance(mark, ast.Attribute) and mark.attr == EVERY:
                    found.append(EVERY)
            if len(found) > 1:
                return "both marks"
            return found[0] if found else None
    return None


def problems(modules: dict[str, str], shared: Iterable[str]) -> dict[str, str]:
    """What is wrong with each module's mark, by name (sources, not files: the test below checks its own cases)."""
    shared_trees = [ast.parse(source) for source in shared]
    found = {}
    for name, source in sorted(modules.items()):
        tree = ast.parse(source)
        mark, reaches = version_mark(tree), reaches_the_server(tree, shared_trees)
        if reaches and mark is None:
            found[name] = f"reaches PostgreSQL without pytestmark = pytest.mark.{EVERY} or pytest.mark.{ANY}('why')"
        elif mark not in (None, EVERY, ANY):
            found[name] = mark
        elif mark == EVERY and not reaches:
            found[name] = f"marked {EVERY} but never reaches PostgreSQL: it would run on every version for nothing"
    return found


def test_every_integration_module_that_reaches_postgresql_says_whether_the_version_matters() -> None:
    modules = {path.name: path.read_text(encoding="utf-8") for path in sorted(INTEGRATION.glob("test_*.py"))}
    shared = [path.read_text(encoding="utf-8") for path in SHARED]
    assert problems(modules, shared) == {}, "mark each module named (see pyproject.toml's markers)"
    assert any(version_mark(ast.parse(source)) == EVERY for source in modules.values())


SHARED_SOURCE = """
@pytest.fixture
def pg(pg_server): ...
@pytest.fixture
def cli(pg, capsys): ...
@pytest.fixture
def aws(moto_server): ...
"""


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def test_x(pg): ...", "reaches PostgreSQL"),
        ("def test_x(cli, aws): ...", "reaches PostgreSQL"),
        ("@pytest.fixture\ndef function(aws, pg): ...\ndef test_x(function): ...", "reaches PostgreSQL"),
        ("def test_x(tmp_path):\n    EmbeddedPostgres().start()", "reaches PostgreSQL"),
        ("pytestmark = pytest.mark.any_pg_version\ndef test_x(pg): ...", "without a reason"),
        ("pytestmark = pytest.mark.any_pg_version('')\ndef test_x(pg): ...", "without a reason"),
        (
            "pytestmark = [pytest.mark.every_pg_version, pytest.mark.any_pg_version('x')]\ndef test_x(pg): ...",
            "both marks",
        ),
        ("pytestmark = pytest.mark.every_pg_version\ndef test_x(aws): ...", "never reaches"),
    ],
)
def test_a_module_without_a_fitting_mark_is_named(source: str, problem: str) -> None:
    assert problem in problems({"test_m.py": source}, [SHARED_SOURCE])["test_m.py"]


@pytest.mark.parametrize(
    "source",
    [
        "pytestmark = pytest.mark.every_pg_version\ndef test_x(cli): ...",
        "pytestmark = pytest.mark.any_pg_version('only S3 reads')\ndef test_x(pg): ...",
        "def test_x(aws, tmp_path): ...",
    ],
)
def test_a_fitting_mark_or_no_server_passes(source: str) -> None:
    assert problems({"test_m.py": source}, [SHARED_SOURCE]) == {}
