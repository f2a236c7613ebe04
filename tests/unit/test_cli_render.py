"""Output for people is rendered from the result documents that --json prints, one renderer per action."""

from __future__ import annotations

import io
from typing import Any

from dbmigrate.cli_render import render


def printed(result: dict[str, Any]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    render(result, out, err)
    return out.getvalue(), err.getvalue()


HISTORY_ROW = {
    "version": 1,
    "description": "t",
    "file": "appdb/1_t.up.sql",
    "checksum": "0" * 64,
    "status": "applied",
    "applied_at": "2024-01-01T10:20:30.123456+00:00",
    "duration_ms": 12,
    "applied_by": "cli:alice@host",
}


def test_status_lists_history_rows_then_pending_files_with_unfinished_progress() -> None:
    partial = {**HISTORY_ROW, "version": 2, "file": "appdb/2_i.up.sql", "status": "partial", "duration_ms": None}
    partial |= {"applied_by": None, "statements_done": 1, "statements_total": 2, "error": "boom"}
    database = {
        "name": "appdb",
        "history": [HISTORY_ROW, partial],
        "pending": [3],
        "pending_files": [{"version": 3, "file": "appdb/3_x.up.sql", "mode": "transaction", "declared": False}],
    }
    out, _ = printed({"action": "status", "databases": [database], "problems": []})
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["DATABASE", "VERSION", "FILE", "STATE", "APPLIED", "AT", "TOOK", "BY"]
    assert lines[1] == [
        "appdb",
        "1",
        "appdb/1_t.up.sql",
        "applied",
        "2024-01-01",
        "10:20:30",
        "12",
        "ms",
        "cli:alice@host",
    ]
    assert lines[2] == ["appdb", "2", "appdb/2_i.up.sql", "partial", "(1/2", "statements)", "2024-01-01", "10:20:30"]
    assert lines[3] == ["appdb", "3", "appdb/3_x.up.sql", "pending"]


def test_a_local_and_a_remote_plan_print_alike_and_name_their_drift() -> None:
    pending = {"version": 2, "file": "projectdb/2_b.up.sql", "mode": "transaction", "declared": False, "reason": None}
    database = {"name": "projectdb", "current_version": 1, "pending": [2], "pending_files": [pending]}
    database |= {"changed": [1], "missing": [], "out_of_order": [], "notes": ["adopts schema_migrations"]}
    problem = {"error": "ChecksumMismatchError", "message": "projectdb/1_a.up.sql: changed"}
    out, _ = printed({"action": "plan", "databases": [database], "problems": [problem]})
    assert out.splitlines() == [
        "projectdb: 1 pending (current 1)",
        "  + projectdb/2_b.up.sql  (one transaction)",
        "  changed: [1]",
        "  note: adopts schema_migrations",
        "problem: projectdb/1_a.up.sql: changed",
    ]


def test_a_plan_says_how_each_pending_file_runs_and_what_would_stop_it() -> None:
    manifest = "not read (the manifest has checksums only)"
    files = [
        {"file": "db/1_a.up.sql", "mode": "transaction", "declared": True, "reason": None},
        {"file": "db/2_b.up.sql", "mode": "autocommit", "declared": False, "reason": "CONCURRENTLY (line 3)"},
        {"file": "db/3_c.up.sql", "mode": "autocommit", "declared": True, "reason": "the file says transaction=false"},
        {"file": "db/4_d.up.sql", "mode": None, "declared": False, "reason": manifest},
        {"file": "db/5_e.up.sql", "mode": None, "declared": False, "error": {"message": "syntax error"}},
    ]
    database = {"name": "db", "current_version": None, "pending": [1, 2, 3, 4, 5], "pending_files": files}
    out, _ = printed({"action": "plan", "databases": [database], "problems": []})
    assert out.splitlines()[1:] == [
        "  + db/1_a.up.sql  (one transaction, as the file says)",
        "  + db/2_b.up.sql  (statement by statement: CONCURRENTLY (line 3))",
        "  + db/3_c.up.sql  (statement by statement: the file says transaction=false)",
        "  + db/4_d.up.sql  (not read (the manifest has checksums only))",
        "  + db/5_e.up.sql  (would fail: syntax error)",
    ]


def test_a_plan_from_a_function_that_names_no_files_lists_the_versions() -> None:
    out, _ = printed({"action": "plan", "databases": [{"name": "db", "current_version": None, "pending": [7]}]})
    assert out.splitlines() == ["db: 1 pending (current -)", "  + 7"]


def test_migrate_prints_a_table_and_the_total() -> None:
    database = {"name": "appdb", "current_version": 3, "applied": [2, 3], "pending": [], "duration_ms": 40}
    out, err = printed({"action": "migrate", "databases": [database], "duration_ms": 55, "warnings": ["lock: x"]})
    assert out.splitlines()[1].split() == ["appdb", "3", "2", "40", "ms"]
    assert out.splitlines()[-1] == "applied 2 file(s) in 55 ms"
    assert err == "warning: lock: x\n"


def test_down_says_what_it_undid_or_would_undo() -> None:
    undone = {"name": "appdb", "current_version": 1, "reverted": [3, 2], "to_undo": []}
    assert printed({"action": "down", "dry_run": False, "databases": [undone]})[0] == "appdb: undid [3, 2]; now at 1\n"
    would = {"name": "appdb", "current_version": 3, "to_undo": [{"version": 3}, {"version": 2}]}
    out, _ = printed({"action": "down", "dry_run": True, "databases": [would]})
    assert out == "appdb: would undo [3, 2] (dry run: nothing undone)\n"


def test_repair_and_baseline_print_their_changes_or_that_there_was_nothing() -> None:
    assert printed({"action": "repair", "databases": [], "changes": []})[0] == "nothing to repair\n"
    out, _ = printed({"action": "baseline", "databases": [], "changes": ["marked 1 file(s)"]})
    assert out == "changed: marked 1 file(s)\n"
