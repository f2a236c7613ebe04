"""The run at deploy time: an ``aws_lambda_invocation`` that migrates on apply.

The resource (not the data source, which would run on every plan) in CRUD lifecycle
mode: the provider wraps the input in a ``tf`` envelope, create/update run
``migrate``, destroy runs a no-op. A failed migration raises in the function, which
fails the invocation and so the apply.

Run modes: ``every-apply`` (default) re-creates the invocation on each apply through a
``timestamp()`` trigger; ``on-change`` keys it on a hash of the migration files and the
package, so it runs only when one of them changes. A repeat run is a cheap no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Literal

from cdktf import Fn, ITerraformDependable
from cdktf_cdktf_provider_aws.lambda_invocation import LambdaInvocation
from constructs import Construct

from .bucket import MigrationFile

__all__ = ["INPUT", "MigrationInvocation", "RunMode", "content_hash"]

RunMode = Literal["every-apply", "on-change"]
INPUT = {"action": "migrate"}
FLEET_INPUT = {"action": "fleet"}


def content_hash(files: Sequence[MigrationFile], package_sha256: str, prefix: str) -> str:
    """One sha256 over what a run depends on: every migration file, the prefix and the code."""
    digest = hashlib.sha256(f"package {package_sha256}\nprefix {prefix}\n".encode())
    for item in sorted(files, key=lambda entry: entry.key):
        digest.update(f"{item.key} {item.sha256}\n".encode())
    return digest.hexdigest()


def fleet_input(run_mode: RunMode, content: str) -> dict[str, str]:
    """A fleet's deploy-time run (``lambda_src/fleet_run.py``). On change, the execution is named by
    the content, so an apply that failed while it ran waits for the same execution the next time;
    on every apply, the function names it by its request."""
    if run_mode == "on-change":
        return {**FLEET_INPUT, "execution": f"deploy-{content[:40]}"}
    return FLEET_INPUT


class MigrationInvocation(Construct):
    """Invoke the function with ``{"action": "migrate"}`` (a fleet: ``{"action": "fleet"}``) after
    everything it needs exists.

    Attributes: ``result`` (the function's JSON result).
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self,
        scope: Construct,
        id: str,
        *,
        function_name: str,
        run_mode: RunMode,
        content: str,
        after: Sequence[ITerraformDependable],
        fleet: bool = False,
    ) -> None:
        super().__init__(scope, id)
        triggers = {"content": content}
        if run_mode == "every-apply":
            triggers["applied_at"] = Fn.timestamp()
        payload = fleet_input(run_mode, content) if fleet else INPUT
        invocation = LambdaInvocation(
            self,
            "migrate",
            function_name=function_name,
            input=json.dumps(payload, sort_keys=True),
            lifecycle_scope="CRUD",
            terraform_key="tf",
            triggers=triggers,
            depends_on=list(after),
        )
        self.result = invocation.result
