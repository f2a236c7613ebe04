"""The README's main job: synthesize the stack and deploy it locally, end to end.

1. ``python main.py`` synthesizes the stack into ``cdktf.out/`` (as ``cdktf synth`` does);
2. the local deploy plays it: PostgreSQL for RDS, moto for S3, SNS, SQS and Secrets Manager,
   the function from its package; the deploy-time invocation applies the migrations;
   every object put makes an S3 event, as on AWS; the function skips the deploy's own;
3. an out-of-band change: a new migration uploaded to the bucket by someone else, its
   S3 event delivered through SNS to the function, which applies it;
4. a second deploy, which applies nothing;
5. a fleet (``local/fleet_demo.py``): three servers and twenty tenant databases migrated by
   the fleet's state machine in moto's ASL interpreter, a canary first, a tenant that fails
   on purpose while the others apply, and a rerun that applies only what is left.

Exits non-zero, with the function's error, if any step fails. The function's own
(JSON) logs go to ``build/local-deploy/function.log``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from local.aws import LocalAws
from local.deploy import LocalDeploy
from local.fleet_demo import run_fleet
from local.function import FunctionError
from local.postgres import EmbeddedPostgres
from local.stack import SynthesizedStack, find_stack_file

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / "build" / "local-deploy"
NEW_MIGRATION = """-- Uploaded straight to the bucket by the demo: the S3 event runs it.
ALTER TABLE widgets ADD COLUMN notes text NOT NULL DEFAULT '';
"""


class Demo:
    """The steps of the main job, each printed as it happens."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.1f} s] {text}")

    def synthesize(self, outdir: Path) -> SynthesizedStack:
        self.step("synthesizing the stack: python main.py (cdktf synth) ...")
        env = {**os.environ, "CDKTF_OUTDIR": str(outdir)}
        run = subprocess.run(
            [sys.executable, "main.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        if run.returncode:
            raise SystemExit(f"synthesis failed:\n{run.stdout}{run.stderr}")
        stack_file = find_stack_file(outdir)
        self.step(f"synthesized {stack_file.relative_to(REPO) if stack_file.is_relative_to(REPO) else stack_file}")
        return SynthesizedStack(stack_file)

    def show(self, title: str, outcome: Any) -> None:
        result = outcome.get("result", outcome)
        self.step(title)
        rows = [("DATABASE", "APPLIED NOW", "PENDING", "CURRENT VERSION", "TIME")]
        for database in result.get("databases", []):
            rows.append(
                (
                    database["name"],
                    ", ".join(map(str, database["applied"])) or "-",
                    ", ".join(map(str, database["pending"])) or "-",
                    str(database["current_version"] or "-"),
                    f"{database['duration_ms']} ms",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.say("    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def delivery(self, deploy: LocalDeploy) -> None:
        """What the deploy's own S3 events did (once they are all delivered)."""
        deploy.settle()
        service = deploy.service
        skipped = sum(1 for item in service.invocations if item.kind == "async" and not item.did_work)
        reserved = "none" if service.reserved_concurrency is None else str(service.reserved_concurrency)
        self.say(
            f"    S3 events so far: {skipped} skipped as the deploy's own; invokes throttled: {service.throttled} "
            f"(reserved concurrency {reserved}); dead-letter queue: {len(service.dead_letters())} message(s)"
        )


def run(outdir: Path, out: TextIO, *, stack: SynthesizedStack | None = None) -> int:
    """The main job; ``stack`` skips synthesis (tests synthesize once per session)."""
    demo = Demo(out)
    stack = stack or demo.synthesize(outdir)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "function.log"
    with log_path.open("w") as logs, EmbeddedPostgres() as server, LocalAws(stack.region()) as aws:
        demo.step(f"stand-ins up: PostgreSQL on {server.host}:{server.port} (for RDS), moto on {aws.endpoint}")
        deploy = LocalDeploy(stack, server, aws, logs=logs)
        try:
            deploy.provision()
            demo.step(f"bucket {deploy.bucket}, database secret, topic created; deploying ...")
            demo.show("deploy: objects uploaded, deploy-time invocation ran", deploy.apply())
            if deploy.note:
                demo.say(f"note: {deploy.note}")
            demo.delivery(deploy)
            version = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            key = f"projectdb/{version}_add_widget_notes.up.sql"
            demo.step(
                f"out of band: uploading {key} to the bucket as another principal; its S3 event goes through "
                "SNS to the function, which first waits UPLOAD_SETTLE_S (5 s) for the rest of a batch"
            )
            demo.show("the S3 event's run", deploy.upload(key, NEW_MIGRATION.encode()).result)
            demo.show("deploy again: no object changed (none put); the replaced run applies nothing", deploy.apply())
            demo.delivery(deploy)
            if not run_fleet(deploy, aws, demo.step, demo.say):
                demo.say("\nthe fleet did not end as it should (see the reports above)")
                return 1
        except FunctionError as exc:
            demo.say(f"\nthe migration function failed, so the apply fails:\n  {exc}\n(logs: {log_path})")
            return 1
        finally:
            deploy.close()
    demo.step(f"done; the function's logs are in {log_path.relative_to(REPO)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=REPO / "cdktf.out", help="where to synthesize")
    args = parser.parse_args()
    return run(args.outdir.resolve(), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
