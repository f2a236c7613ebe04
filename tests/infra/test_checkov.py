"""checkov on the synthesized stack: nothing fails beyond the findings accepted with a reason."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.accepted_findings import ACCEPTED_FINDINGS

from .conftest import ROOT, Synth

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"


def run_checkov(stack_dir: Path) -> dict[str, list[dict[str, object]]]:
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing: `make checkov` installs it")
        pytest.skip(f"{CHECKOV} is missing: run `make checkov` to install it")
    completed = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(stack_dir),
            "--framework",
            "terraform_json",
            "--skip-download",
            "--output",
            "json",
        ],
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},  # no call home for guideline mappings
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.stdout.strip(), completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["summary"]["parsing_errors"] == 0
    results: dict[str, list[dict[str, object]]] = report["results"]
    return results


def resource_types(stack: dict[str, Any]) -> dict[str, str]:
    """Logical name -> type; checkov names findings ``type.name``, ``resource.name`` or ``data.name``."""
    return {
        name: kind
        for section in ("resource", "data")
        for kind, items in stack.get(section, {}).items()
        for name in items
    }


def findings(synth: Synth) -> tuple[list[tuple[str, str]], int]:
    """checkov's failed checks on a synthesized stack as ``(check, resource type)``, and how many passed."""
    results = run_checkov(synth.stack_dir)
    types = resource_types(synth.stack)
    failed = [
        (str(item["check_id"]), types[str(item["resource"]).rsplit(".", 1)[-1]])
        for item in results.get("failed_checks", [])
    ]
    return failed, len(results.get("passed_checks", []))


def test_checkov_fails_nothing_that_is_not_accepted_with_a_reason(synth: Synth) -> None:
    failed, passed = findings(synth)
    accepted = [finding for finding in failed if finding in ACCEPTED_FINDINGS]
    unexpected = [finding for finding in failed if finding not in ACCEPTED_FINDINGS]
    print(f"checkov: {passed} passed, {len(unexpected)} failed, {len(accepted)} skipped (accepted with a reason)")
    assert unexpected == []
    assert set(ACCEPTED_FINDINGS) - set(accepted) == set(), "accepted findings checkov no longer reports: remove them"
    assert passed > 100
    assert all(reason.strip() and "\n" not in reason for reason in ACCEPTED_FINDINGS.values())
