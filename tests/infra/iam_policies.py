"""Policy decisions by a real evaluator: @cloud-copilot/iam-simulate (npm, a maintained AWS IAM
simulator: identity and resource policies, every condition operator), run under the project's Node.

``decide`` sends one request and its policies to ``iam_simulate.cjs`` and returns the overall
result: ``Allowed``, ``ExplicitlyDenied`` or ``ImplicitlyDenied``. The simulator does not fill in
context keys from the principal: a test passes the ones AWS would set (``aws:PrincipalArn``,
``aws:SecureTransport``, ``aws:SourceArn``, ``kms:ViaService``, ``kms:EncryptionContext:<key>``) in
``context``.

One limitation is worked around here: the simulator (0.1.173) drops a context key whose variable part
follows a colon, as ``kms:EncryptionContext:<key>`` does (it matches variable keys only after a slash,
``aws:PrincipalTag/<key>``), so a statement conditioned on the encryption context would never match.
``simulation()`` renames such keys, in the request's context and in every policy's conditions alike, to
``aws:PrincipalTag/kms:EncryptionContext:<key>``, which it evaluates with the same operators and values.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = Path(__file__).with_name("iam_simulate.cjs")
NODE = ROOT / "node_modules" / ".bin" / "node"
UNRESOLVED = re.compile(r"\$\{[^}]*\}")
ENCRYPTION_CONTEXT = "kms:encryptioncontext:"
STAND_IN = "aws:PrincipalTag/"


def evaluable_key(key: str) -> str:
    """The name the simulator evaluates a context key under (see the module docstring)."""
    return STAND_IN + key if key.lower().startswith(ENCRYPTION_CONTEXT) else key


def evaluable_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    """``policy`` with its encryption-context condition keys renamed as ``evaluable_key`` does."""
    statements = policy["Statement"]
    renamed = []
    for statement in statements if isinstance(statements, list) else [statements]:
        conditions = {
            operator: {evaluable_key(key): value for key, value in keys.items()}
            for operator, keys in statement.get("Condition", {}).items()
        }
        renamed.append({**statement, **({"Condition": conditions} if conditions else {})})
    return {**policy, "Statement": renamed}


def resolve(text: str, values: Mapping[str, str]) -> dict[str, Any]:
    """A synthesized policy with its references (``${type.name.attribute}``) replaced by ``values``."""
    for reference, value in values.items():
        text = text.replace("${" + reference + "}", value)
    left = UNRESOLVED.findall(text)
    assert not left, f"references left in the policy: {left}"
    document: dict[str, Any] = json.loads(text)
    return document


@dataclass(frozen=True)
class Request:
    """One request to evaluate: who asks for what on which resource, with which context keys."""

    principal: str
    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]]
    account_id: str = "123456789012"
    identity_policies: Sequence[Mapping[str, Any]] = ()
    resource_policy: Mapping[str, Any] | None = None

    def simulation(self) -> dict[str, Any]:
        return {
            "request": {
                "principal": self.principal,
                "action": self.action,
                "resource": {"resource": self.resource, "accountId": self.account_id},
                "contextVariables": {evaluable_key(key): value for key, value in self.context.items()},
            },
            "identityPolicies": [
                {"name": f"identity-{index}", "policy": evaluable_policy(policy)}
                for index, policy in enumerate(self.identity_policies)
            ],
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
            **({"resourcePolicy": evaluable_policy(self.resource_policy)} if self.resource_policy is not None else {}),
        }


def decide(requests: Sequence[Request]) -> list[str]:
    """The evaluator's overall decision for each request, in order (one Node process for all)."""
    completed = subprocess.run(
        [str(NODE), str(BRIDGE)],
        input=json.dumps({"simulations": [request.simulation() for request in requests]}),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    decisions = []
    for request, response in zip(requests, json.loads(completed.stdout), strict=True):
        assert response["resultType"] == "single", f"the simulator refused {request}: {response}"
        decisions.append(str(response["overallResult"]))
    return decisions
