"""The example CI workflow: actionlint passes, and the properties that keep deploys safe hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "migrations.yml"
SETUP = ROOT / ".github" / "actions" / "setup" / "action.yml"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def job(name: str) -> dict[str, Any]:
    jobs: dict[str, Any] = load(WORKFLOW)["jobs"]
    return dict(jobs[name])


def runs(name: str) -> str:
    return "\n".join(str(step.get("run", "")) for step in job(name)["steps"])


def all_steps() -> Iterator[dict[str, Any]]:
    for path in WORKFLOWS.glob("*.yml"):
        for body in load(path)["jobs"].values():
            yield from body.get("steps", [])
    yield from load(SETUP)["runs"]["steps"]


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(actionlint).exists():
        pytest.fail("actionlint is not installed: it comes with the Pipfile's dev packages (make deps)")
    files = [str(path) for path in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run([actionlint, *files], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_pinned_to_a_major_version_or_a_commit() -> None:
    # actionlint does not look inside the local composite action: this covers it too.
    used = [str(step["uses"]) for step in all_steps() if "uses" in step]
    assert used
    for action in used:
        if not action.startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", action), action


def test_aws_access_is_oidc_role_assumption_never_keys() -> None:
    texts = [path.read_text() for path in [*WORKFLOWS.glob("*.yml"), SETUP]]
    for text in texts:
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text and "secrets." not in text
    assert load(WORKFLOW)["permissions"] == {"contents": "read"}
    for name in ("plan", "deploy"):
        assert job(name)["permissions"] == {"contents": "read", "id-token": "write"}
        credentials = [s for s in job(name)["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-")]
        assert len(credentials) == 1 and credentials[0]["with"]["role-to-assume"].startswith("${{ vars.")
    assert "id-token" not in job("test").get("permissions", {})


def test_deploy_runs_only_on_main_one_at_a_time_after_the_tests() -> None:
    deploy = job("deploy")
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    triggers = yaml.safe_load(WORKFLOW.read_text())[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"] == {"branches": ["main"]}
    assert deploy["needs"] == "test"
    assert deploy["environment"] == "production"
    assert deploy["concurrency"]["group"] and deploy["concurrency"]["cancel-in-progress"] is False
    assert "cdktf deploy --auto-approve" in runs("deploy")
    assert "deploy" not in runs("plan") and "deploy" not in runs("test")


def test_terraform_state_is_the_shared_bucket_in_every_job_that_reads_or_writes_it() -> None:
    for name in ("plan", "deploy"):
        assert job(name)["env"]["DBMIGRATE_STATE_BUCKET"] == "${{ vars.TF_STATE_BUCKET }}"


def test_every_job_installs_terraform_the_locked_env_and_puts_pipenv_on_path() -> None:
    for name in ("test", "plan", "deploy"):
        assert {"uses": "./.github/actions/setup"} in job(name)["steps"]
    setup = SETUP.read_text()
    for needed in ("hashicorp/setup-terraform@", "make deps node_modules/.bin/node", ".tools/bin", "GITHUB_PATH"):
        assert needed in setup


def test_pull_requests_get_tests_lint_synth_diff_and_the_remote_plan_in_the_job_summary() -> None:
    assert "make test" in runs("test")
    assert job("plan")["if"] == "github.event_name == 'pull_request'"
    plan = runs("plan")
    commands = (
        "dbmigrate lint --dir migrations",
        "make synth",
        "cdktf diff",
        'dbmigrate plan --function "$FUNCTION_NAME" --dir migrations --json',
        'python -m ci.plan_summary plan.json >> "$GITHUB_STEP_SUMMARY"',
    )
    positions = [plan.index(command) for command in commands]
    assert positions == sorted(positions)


def test_plan_and_deploy_name_the_same_deploying_principal() -> None:
    values = {job(name)["env"].get("DBMIGRATE_DEPLOY_PRINCIPAL") for name in ("plan", "deploy")}
    assert values == {"${{ vars.AWS_DEPLOY_ROLE_ID }}"}
