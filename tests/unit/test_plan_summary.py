"""The CI job summary of a plan: one row per database, problems spelled out, exit 1 on drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci.plan_summary import main, render

HINT = (
    "restore the file as applied and put the change in a new migration; or, after review, "
    "accept it with `dbmigrate repair --database projectdb --accept-checksum 202401010100`"
)


def database(name: str, current: int | None, **drift: Any) -> dict[str, Any]:
    """One database of `dbmigrate plan --json` (the shape RunReport.to_dict gives a plan)."""
    row: dict[str, Any] = {
        "name": name,
        "current_version": current,
        "applied": [],
        "pending": [],
        "duration_ms": 11,
        "exists": True,
        "changed": [],
        "missing": [],
        "out_of_order": [],
        "unfinished": [],
        "notes": [],
    }
    return {**row, **drift}


# Taken from a real `dbmigrate plan --json` after editing an applied file and adding one.
PLAN: dict[str, Any] = {
    "action": "plan",
    "source": "migrations",
    "databases": [
        database("postgres", 202401010000),
        database(
            "projectdb",
            202401050800,
            pending=[202401060900, 209901010000],
            changed=[202401010100],
            out_of_order=[202401040000],
        ),
    ],
    "duration_ms": 24,
    "problems": [
        {
            "error": "ChecksumMismatchError",
            "message": "projectdb/202401010100_create_users.up.sql: applied file was changed after it was applied: "
            f"checksum was 5e93bf9e, is now a6b9fe3f Fix: {HINT}",
            "database": "projectdb",
            "file": "projectdb/202401010100_create_users.up.sql",
            "hint": HINT,
        }
    ],
}


def test_each_database_is_a_row_with_its_current_and_pending_versions_and_drift() -> None:
    markdown = render(PLAN)
    assert "| database | current version | would apply | changed since applied | missing | out of order |" in markdown
    assert "| postgres | 202401010000 | - | - | - | - |" in markdown
    assert "| projectdb | 202401050800 | 202401060900, 209901010000 | 202401010100 | - | 202401040000 |" in markdown


def test_problems_are_listed_with_their_file_and_fix() -> None:
    markdown = render(PLAN)
    assert (
        "**A deploy would fail:**\n- projectdb/202401010100_create_users.up.sql: applied file was changed" in markdown
    )
    assert "Fix: restore the file as applied" in markdown


def test_a_clean_plan_counts_the_files_a_deploy_would_apply() -> None:
    assert "No drift: a deploy would apply 2 file(s)." in render({**PLAN, "problems": []})


def test_version_zero_new_databases_and_long_pending_lists_render_readably() -> None:
    plan = {
        "databases": [
            database("zero", 0),
            database("fresh", None, exists=False, pending=list(range(1, 26))),
            database("empty", None),
        ],
        "problems": [],
    }
    markdown = render(plan)
    assert "| zero | 0 |" in markdown
    assert "| fresh | not created yet | 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 15 more |" in markdown
    assert "| empty | none yet |" in markdown


def test_exit_code_is_1_on_problems_0_without_and_2_for_an_error_instead_of_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN))
    assert main([str(path)]) == 1
    path.write_text(json.dumps({**PLAN, "problems": []}))
    assert main([str(path)]) == 0
    assert "No drift" in capsys.readouterr().out

    # What `dbmigrate plan --function --json` prints when the function cannot be invoked.
    error = {"error": "RemotePlanError", "message": "cannot invoke dbmigrate-migrate: AccessDenied Fix: check..."}
    path.write_text(json.dumps(error))
    assert main([str(path)]) == 2
    assert "**No plan:** `cannot invoke dbmigrate-migrate: AccessDenied" in capsys.readouterr().out
    path.write_text("")
    assert main([str(path)]) == 2
    assert main([str(tmp_path / "absent.json")]) == 2


def test_the_summary_says_every_plan_replaces_the_run_and_each_apply_invokes_twice() -> None:
    markdown = render({**PLAN, "problems": []}, "every-apply")
    note = markdown.split("No drift: a deploy would apply 2 file(s).", 1)[1]
    assert "`aws_lambda_invocation`" in note and "*must be replaced*" in note
    assert "`applied_at` is `timestamp()`" in note
    assert "at least 1 to add and 1 to destroy" in note
    assert note.index('"action": "delete"') < note.index('"action": "create"'), "destroy first, then create"
    assert "on-change" not in note


def test_in_on_change_mode_the_summary_says_the_run_is_replaced_when_its_content_changes() -> None:
    note = render(PLAN, "on-change").split("**A deploy would fail:**", 1)[1]
    assert "whenever its trigger `content` changes" in note
    assert "timestamp()" not in note


def test_an_unknown_run_mode_explains_both(tmp_path: Path) -> None:
    markdown = render(PLAN, None)
    assert "With run_mode `every-apply`:" in markdown and "With run_mode `on-change`:" in markdown


def test_the_command_reads_the_run_mode_as_the_synth_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**PLAN, "problems": []}))
    monkeypatch.setenv("DBMIGRATE_RUN_MODE", "on-change")
    assert main([str(path)]) == 0
    assert "whenever its trigger `content` changes" in capsys.readouterr().out
    monkeypatch.setenv("DBMIGRATE_RUN_MODE", "every-apply")
    assert main([str(path)]) == 0
    assert "`applied_at` is `timestamp()`" in capsys.readouterr().out
    monkeypatch.setenv("DBMIGRATE_RUN_MODE", "sometimes")
    assert main([str(path)]) == 0
    assert "With run_mode `on-change`:" in capsys.readouterr().out
