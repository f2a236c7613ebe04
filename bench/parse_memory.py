"""Peak memory of reading one big migration file (``sqlscript.analyze``), 10 and 50 MB.

Each measurement runs in a child interpreter of its own: it builds the file's text,
notes its peak resident memory (``getrusage`` maxrss), analyzes the text, and reports
the peak again; a second child does the same under ``tracemalloc`` (Python objects
only: the parser's C memory is not traced). Shapes: many one-row INSERTs (the most
statements per megabyte), many CREATE TABLE statements with keys and checks (bigger
trees), a function with one huge body and one INSERT ... VALUES, each just under the
one-statement limit and at 10 MB (refused: what the refusal costs). ``--before``
also reads the 10 MB INSERT file as one chunk, as the engine did before it parsed in
chunks.

    .venv/bin/python -m bench.parse_memory            # about 5 minutes on 2 CPUs
    .venv/bin/python -m bench.parse_memory --before   # + the one-chunk reading (about 1 GB)

Prints a Markdown table (paste it into RESULTS.md); nothing asserts on a number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024

CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {lambda_src!r})
from dbmigrate import sqlscript
shape, size, traced, whole = {shape!r}, {size}, {traced}, {whole}

def text():
    if shape == "inserts":
        row = "INSERT INTO notes (id, body, note) VALUES (1, 'some body text', 'a note about it');\n"
        return row * (size // len(row))
    if shape == "tables":
        parts, i, length = [], 0, 0
        while length < size:
            parts.append(
                f"CREATE TABLE t{{i}} (id bigint PRIMARY KEY, owner bigint REFERENCES users (id), "
                f"name text NOT NULL CHECK (length(name) < 200), created timestamptz DEFAULT now());\n"
                f"CREATE INDEX t{{i}}_owner ON t{{i}} (owner) WHERE name <> '';\n"
            )
            length += len(parts[-1])
            i += 1
        return "".join(parts)
    if shape == "body":
        return "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT '" + "x" * size + "' $$;\n"
    if shape == "values":
        row = "(1, 'some body text', 'a note'),\n"
        return "INSERT INTO notes VALUES\n" + row * (size // len(row)) + "(0, 'x', 'y');\n"
    raise SystemExit(shape)

sql = text()
if whole:
    sqlscript.CHUNK_CHARS = sqlscript.MAX_STATEMENT_CHARS = 10**12
if traced:
    tracemalloc.start()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    statements, refused = len(sqlscript.analyze(sql, database="db", file="db/1_big.up.sql").statements), None
except Exception as exc:  # the one-statement limit: refused, and how much that cost
    statements, refused = 0, str(exc)
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
print(json.dumps({{"chars": len(sql), "statements": statements, "before_kb": before, "refused": refused,
                  "peak_kb": peak, "traced_peak": traced_peak, "seconds": seconds}}))
"""


def measure(shape: str, size: int, *, traced: bool, whole: bool = False) -> dict[str, Any]:
    """One child run; its JSON line."""
    code = CHILD.format(lambda_src=str(ROOT / "lambda_src"), shape=shape, size=size, traced=traced, whole=whole)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", action="store_true", help="also read the 10 MB file as one chunk")
    parser.add_argument("--shapes", nargs="*", default=["inserts", "tables", "body", "values"], help="which files")
    args = parser.parse_args()
    sizes = {"inserts": [10 * MB, 50 * MB], "tables": [10 * MB, 50 * MB], "body": [MB - 128, 10 * MB]}
    sizes["values"] = [MB - 64, 10 * MB]
    cases = [(shape, size, False) for shape in args.shapes for size in sizes[shape]]
    if args.before:
        cases.append(("inserts", 10 * MB, True))
    print(
        "| file | statements | text MB | RSS before analyze MB | peak RSS MB | added MB | added / text "
        "| Python peak (tracemalloc) MB | s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shape, size, whole in cases:
        rss = measure(shape, size, traced=False, whole=whole)
        traced = measure(shape, size, traced=True) if size <= 10 * MB and not whole and not rss["refused"] else None
        text_mb = rss["chars"] / MB
        added = (rss["peak_kb"] - rss["before_kb"]) / 1024
        label = f"{shape} {size / MB:.0f} MB" + (" (one chunk, as before)" if whole else "")
        if rss["refused"]:
            label += " (refused: over the 1 MiB statement limit)"
        python_peak = f"{traced['traced_peak'] / MB:.0f}" if traced and traced["traced_peak"] else "-"
        print(
            f"| {label} | {rss['statements']:,} | {text_mb:.1f} | {rss['before_kb'] / 1024:.0f} | "
            f"{rss['peak_kb'] / 1024:.0f} | {added:.0f} | {added / text_mb:.1f}x | {python_peak} | "
            f"{rss['seconds']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
