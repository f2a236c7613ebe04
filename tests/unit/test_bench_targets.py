"""The benchmark's verdicts are issue 15's targets: by set, against dbmate and the psql floor."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import target_lines
from bench.tools import OURS, OURS_ALL_OR_NOTHING, PSQL_FLOOR


def _results(ours: float, all_or_nothing: float, dbmate: float, floor: float) -> dict[str, Any]:
    def tool(seconds: float, *, peer: bool) -> dict[str, Any]:
        return {"apply_median_s": seconds, "peer": peer}

    return {
        OURS: tool(ours, peer=False),
        OURS_ALL_OR_NOTHING: tool(all_or_nothing, peer=False),
        "dbmate": tool(dbmate, peer=True),
        PSQL_FLOOR: tool(floor, peer=False),
    }


def _lines(set_name: str, results: dict[str, Any]) -> tuple[str, str]:
    ours, all_or_nothing = target_lines([{"name": set_name}], {set_name: results})
    return ours, all_or_nothing


@pytest.mark.parametrize(
    ("set_name", "ours", "verdict", "ratio"),
    [
        ("small-1000", 8.6, "at most 0.85x dbmate: MISSED", "0.86x"),
        ("small-1000", 8.4, "at most 0.85x dbmate: met", "0.84x"),
        ("small-5000", 8.6, "at most 0.85x dbmate: MISSED", "0.86x"),
        ("small-100", 10.0, "at most 1.0x dbmate: met", "1.00x"),
        ("small-100", 10.1, "at most 1.0x dbmate: MISSED", "1.01x"),
        ("medium-200", 9.9, "at most 1.0x dbmate: met", "0.99x"),
    ],
)
def test_ours_is_judged_against_dbmate_by_the_sets_own_target(
    set_name: str, ours: float, verdict: str, ratio: str
) -> None:
    line, _ = _lines(set_name, _results(ours, ours, dbmate=10.0, floor=ours))
    assert f"{verdict} ({ratio})" in line


@pytest.mark.parametrize(
    ("set_name", "ours", "verdict"),
    [
        ("small-1000", 1.16, "at most 1.15x the psql floor: MISSED (1.16x)"),
        ("small-1000", 1.14, "at most 1.15x the psql floor: met (1.14x)"),
        ("small-5000", 1.29, "at most 1.3x the psql floor: met (1.29x)"),
        ("medium-200", 1.31, "at most 1.3x the psql floor: MISSED (1.31x)"),
    ],
)
def test_ours_is_judged_against_the_floor_by_the_sets_own_target(set_name: str, ours: float, verdict: str) -> None:
    line, _ = _lines(set_name, _results(ours, 1.0, dbmate=10.0, floor=1.0))
    assert verdict in line


@pytest.mark.parametrize("set_name", ["small-100", "small-1000", "medium-200"])
def test_all_or_nothing_is_held_to_five_percent_over_the_floor_on_every_set(set_name: str) -> None:
    _, within = _lines(set_name, _results(1.0, 1.04, dbmate=10.0, floor=1.0))
    _, over = _lines(set_name, _results(1.0, 1.06, dbmate=10.0, floor=1.0))
    assert "at most 1.05x the psql floor: met (1.04x)" in within
    assert "at most 1.05x the psql floor: MISSED (1.06x)" in over


def test_all_or_nothing_is_held_to_the_floor_and_only_has_to_be_at_or_under_the_peers() -> None:
    _, line = _lines("small-1000", _results(1.0, 9.0, dbmate=10.0, floor=8.8))
    assert "at most 1.0x dbmate: met (0.90x)" in line
    assert "at most 1.05x the psql floor: met (1.02x)" in line
