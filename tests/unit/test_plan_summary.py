"""The CI job summary of a plan: one row per database, problems spelled out, exit 1 on drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci.plan_summary import main, render

PLAN = {
    "action": "plan",
    "databases": [
        {"name": "postgres", "current_version": 202401010000, "pending": [], "changed": [], "missing": []},
        {
            "name": "projectdb",
            "current_version": 202401020900,
            "pending": [202401050800, 202401060900],
            "changed": [202401010100],
            "missing": [],
            "out_of_order": [202401015000],
        },
    ],
    "problems": [{"error": "ChecksumMismatchError", "message": "projectdb/202401010100_create_users.up.sql: changed"}],
}


def test_each_database_is_a_row_with_its_pending_versions_and_drift() -> None:
    markdown = render(PLAN)
    assert "| postgres | 202401010000 | - | - | - | - |" in markdown
    assert "| projectdb | 202401020900 | 202401050800, 202401060900 | 202401010100 | - | 202401015000 |" in markdown
    assert "**A deploy would fail:**\n- projectdb/202401010100_create_users.up.sql: changed" in markdown


def test_exit_code_is_1_on_problems_0_without_and_2_for_something_that_is_not_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN))
    assert main([str(path)]) == 1
    path.write_text(json.dumps({**PLAN, "problems": []}))
    assert main([str(path)]) == 0
    assert "No drift" in capsys.readouterr().out
    path.write_text(json.dumps({"error": "RemotePlanError", "message": "cannot invoke"}))
    assert main([str(path)]) == 2
    assert "**No plan:**" in capsys.readouterr().out
