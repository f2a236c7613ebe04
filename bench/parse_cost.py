"""What reading a file costs: ``sqlscript.analyze`` on files shaped to stress each decision.

    .venv/bin/python -m bench.parse_cost            # the engine in this tree
    PYTHONPATH=<other tree>/lambda_src .venv/bin/python bench/parse_cost.py   # another one

Prints the best of five runs per file shape, in milliseconds. Nothing asserts on a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dbmigrate.sqlscript import analyze


def plain(n: int) -> str:
    return "".join(f"CREATE TABLE t{i} (id int PRIMARY KEY, note text DEFAULT 'x');\n" for i in range(n))


def do_blocks(n: int) -> str:
    body = "BEGIN IF true THEN INSERT INTO t VALUES ('commit; {i}'); END IF; PERFORM set_config('a', 'b', true); END"
    return "".join(f"DO $b$ {body.format(i=i)} $b$;\n" for i in range(n))


def legacy_dump(n: int) -> str:
    rows = "".join(f"INSERT INTO legacy VALUES ({i}, 'it\\'s row {i}; \\\\ done');\n" for i in range(n))
    return "SET standard_conforming_strings = off;\nCREATE TABLE legacy (id int, note text);\n" + rows


SHAPES: dict[str, Callable[[], str]] = {
    "2,000 CREATE TABLE": lambda: plain(2000),
    "500 DO blocks": lambda: do_blocks(500),
    "20,000 INSERTs, standard_conforming_strings off": lambda: legacy_dump(20000),
}


def main() -> None:
    for name, make in SHAPES.items():
        sql = make()
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            try:
                analyze(sql, database="db", file="db/1_x.up.sql")
            except Exception as exc:  # an older engine may refuse a shape: say so
                print(f"{name}: refused ({type(exc).__name__})")
                break
            best = min(best, time.perf_counter() - started)
        else:
            print(f"{name} ({len(sql) / 1e6:.2f} MB): {best * 1000:.0f} ms")


if __name__ == "__main__":
    main()
