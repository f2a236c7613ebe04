"""The example CI workflow: actionlint passes, and the properties that keep deploys safe hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "migrations.yml"


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(actionlint).exists():
        pytest.fail("actionlint is not installed: it comes with the Pipfile's dev packages (make deps)")
    files = [str(path) for path in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run([actionlint, *files], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_aws_access_is_oidc_role_assumption_never_keys() -> None:
    text = WORKFLOW.read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for name in ("plan", "deploy"):
        job = workflow()["jobs"][name]
        assert job["permissions"]["id-token"] == "write"
        credentials = [s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-cred")]
        assert len(credentials) == 1 and "role-to-assume" in credentials[0]["with"]


def test_deploy_runs_only_on_main_one_at_a_time_after_the_tests() -> None:
    deploy = workflow()["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["needs"] == "test"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert any("cdktf deploy --auto-approve" in str(step.get("run", "")) for step in deploy["steps"])


def test_pull_requests_get_lint_synth_diff_and_the_remote_plan_in_the_job_summary() -> None:
    runs = " ".join(str(step.get("run", "")) for step in workflow()["jobs"]["plan"]["steps"])
    for command in ("dbmigrate lint", "make synth", "cdktf diff", "dbmigrate plan --function", "GITHUB_STEP_SUMMARY"):
        assert command in runs
