"""The end-to-end tests play the synthesized example stack on local stand-ins.

The stack is synthesized once per session exactly as the main job does it
(``python main.py`` into a temporary ``CDKTF_OUTDIR``: ``main_stack_file`` in tests/conftest.py); each test gets a fresh
PostgreSQL state, a fresh moto state and its own function process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws import LocalAws
from local.deploy import LocalDeploy, runnable_package
from local.function import PackageImage
from local.postgres import EmbeddedPostgres
from local.stack import SynthesizedStack


@pytest.fixture(scope="session")
def stack_file(main_stack_file: Path) -> Path:
    return main_stack_file


@pytest.fixture
def stack(stack_file: Path) -> SynthesizedStack:
    return SynthesizedStack(stack_file)  # fresh stand-in values per test


@pytest.fixture
def local_aws(moto_server: LocalAws, stack: SynthesizedStack) -> LocalAws:
    return moto_server.reset(stack.region())


@pytest.fixture(scope="session")
def runnable(stack_file: Path) -> tuple[Path, str, str]:
    """The synthesized function's package and the interpreter to run it (see runnable_package)."""
    return runnable_package(
        stack_file.parent / SynthesizedStack(stack_file).one("aws_lambda_function").args["filename"]
    )


@pytest.fixture(scope="session")
def image(runnable: tuple[Path, str, str]) -> Iterator[PackageImage]:
    """The package, unpacked once for the session."""
    prepared = PackageImage(runnable[0])
    yield prepared
    prepared.remove()


SYNTHESIZED = "synthesized"


@pytest.fixture
def reserved(request: pytest.FixtureRequest) -> Any:
    """The function's reserved concurrency for a test (``parametrize(..., indirect=True)``):
    a number, None for no reservation, or what the stack synthesized (the default)."""
    return getattr(request, "param", SYNTHESIZED)


def set_reserved_concurrency(stack: SynthesizedStack, reserved: int | None) -> None:
    """Play the stack as if ``reserved_concurrent_executions`` had been synthesized so (None: unset)."""
    function = stack.document["resource"]["aws_lambda_function"][stack.one("aws_lambda_function").name]
    function.pop("reserved_concurrent_executions", None)
    if reserved is not None:
        function["reserved_concurrent_executions"] = reserved


@pytest.fixture
def deployed(  # noqa: PLR0913  pytest passes each fixture and parameter by name
    stack: SynthesizedStack,
    pg: EmbeddedPostgres,
    local_aws: LocalAws,
    image: PackageImage,
    runnable: tuple[Path, str, str],
    reserved: Any,
) -> Iterator[LocalDeploy]:
    """The stack provisioned on the stand-ins (bucket, database user and secret, topic, queues), not yet applied."""
    if reserved != SYNTHESIZED:
        set_reserved_concurrency(stack, reserved)
    # Uploads in a test arrive one at a time: a short settle time keeps the tests quick.
    deploy = LocalDeploy(stack, pg, local_aws, python=runnable[1], image=image, overrides={"UPLOAD_SETTLE_S": "0.3"})
    deploy.provision()
    yield deploy
    deploy.close()
