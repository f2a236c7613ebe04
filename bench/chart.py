"""The chart of RESULTS.md: apply and no-op time vs number of files, per tool.

Needs matplotlib. When the benchmark's interpreter has none, run.py runs this module
with ``bench/.venv-peers/bin/python`` if that one has it
(``python -m bench.chart results.json out.png``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["chart", "draw"]

NO_OP_TARGET_S = 0.5
PEERS_PYTHON = Path(__file__).resolve().parent / ".venv-peers" / "bin" / "python"


def chart(data: dict[str, Any], results_json: Path, target: Path) -> Path | None:
    """Draw the chart in this interpreter or the peers' venv; None when neither has matplotlib."""
    try:
        draw(data, target)
        return target
    except ImportError:
        pass
    if not PEERS_PYTHON.is_file():
        return None
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [str(PEERS_PYTHON), "-m", "bench.chart", str(results_json), str(target)],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    return target if result.returncode == 0 else None


def draw(data: dict[str, Any], target: Path) -> None:
    """Apply and no-op time vs number of files, per tool (small-file sets); ImportError without matplotlib."""
    import matplotlib  # noqa: PLC0415 - optional: the chart is skipped without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sets = sorted((s for s in data["sets"] if s["kind"] == "small"), key=lambda s: s["files"])
    tools = list(data["results"][sets[0]["name"]])
    figure, (apply_axes, noop_axes) = plt.subplots(1, 2, figsize=(12, 5))
    for tool in tools:
        points = [(s["files"], data["results"][s["name"]][tool]) for s in sets if tool in data["results"][s["name"]]]
        apply_axes.plot([n for n, _ in points], [r["apply_median_s"] for _, r in points], marker="o", label=tool)
        noop = [(n, r["noop_median_s"]) for n, r in points if "noop_median_s" in r]
        if noop:
            noop_axes.plot([n for n, _ in noop], [t for _, t in noop], marker="o", label=tool)
    for axes, title in ((apply_axes, "apply (small files)"), (noop_axes, "no-op re-run")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("files")
        axes.set_ylabel("seconds (median)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    noop_axes.axhline(NO_OP_TARGET_S, color="grey", linestyle="--", linewidth=1)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
