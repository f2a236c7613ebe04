"""The README's main job, locally: the example migrations on a throwaway PostgreSQL.

Starts a PostgreSQL server on 127.0.0.1 (the stand-in for RDS), then runs the
``dbmigrate`` CLI as a user would: plan, up, status, and up again (which applies
nothing). Exits non-zero if any step fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dbmigrate.cli import main as dbmigrate
from local.postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]


def run(migrations: Path) -> int:
    """Run the demo on ``migrations``; returns the first non-zero exit code, or 0."""
    started = time.monotonic()
    print("starting a throwaway PostgreSQL on 127.0.0.1 ...", flush=True)
    with EmbeddedPostgres() as server:
        print(f"PostgreSQL is up on {server.host}:{server.port}\n", flush=True)
        for step in ("plan", "up", "status", "up"):
            shown = migrations.relative_to(REPO) if migrations.is_relative_to(REPO) else migrations
            print(f"$ dbmigrate {step} --dir {shown}")
            code = dbmigrate([step, "--dir", str(migrations), "--database-url", server.url()])
            print(flush=True)
            if code:
                print(f"dbmigrate {step} failed with exit code {code}", file=sys.stderr)
                return code
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=REPO / "migrations", help="migrations folder")
    return run(parser.parse_args().dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
