"""A first deploy from S3 at a real network's latency: from the deploy's bundle, read ahead, and from a folder.

The real handler (``handler.handler``) applies ``small_set(1000)`` to a fresh database
from moto S3, with ``--latency-ms`` slept before every request the function's S3 client
sends (a botocore ``before-send`` hook on the client ``aws_clients.aws_client`` makes), as
a Lambda in a VPC sees S3 (tens of ms a request). Each way of reading is one row: the
set uploaded as the stack does (each file with its checksum, and the bundle:
``dbmigrate.bundle``), as shipped; the set without a bundle, read ahead file by file
(``dbmigrate.prefetch``, with ``--workers``); the same at no added latency (what S3
requests cost here besides waiting); and the same handler with its source swapped for
the set's folder on disk (``LocalSource``). ``--file-by-file`` adds the reads before
reading ahead existed (``ReadAhead`` with no workers: 30 s a run at 20 ms). Then the
no-op run on 5,000 keys at the latency: its S3 calls and what the server saw.

moto runs in a child process (``moto.server``): S3's own work is not the function's, and
in-process it would take the function's CPU and its GIL. CPU columns: the function's
process (every thread) and the moto process, per run. Median of ``--runs`` runs, modes
interleaved in rotating order; ``--append`` adds the section to bench/RESULTS.md.

    PYTHONPATH=lambda_src .venv/bin/python -m bench.s3_latency [--runs 3] [--latency-ms 20] [--workers 8 16] [--append]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

import aws_clients
import dbmigrate.runner
import handler as function
from dbmigrate import s3source
from dbmigrate.prefetch import DEFAULT_WORKERS, ReadAhead
from dbmigrate.sources import LocalSource, MigrationSource
from environment import VARIABLES
from local.aws import LocalAws
from local.lambda_runtime import Context
from local.net import free_port
from local.postgres import EmbeddedPostgres

from .measure import QueryLog, count_queries, fresh_database
from .run import SERVER_SETTINGS
from .sets import small_set, write_layouts

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
BUCKET = "bench-migrations"
FIRST_DEPLOY = "first-deploy/"
BUNDLED = "bundled/"
NOOP = "noop/"
FILES, NOOP_FILES = 1000, 5000
TARGET_RATIO = 1.3


@dataclass
class Mode:
    """One way the handler reads the set: from the folder, or from S3 at a latency with some workers (0: by file)."""

    name: str
    latency_s: float = 0.0
    workers: int | None = None  # None: the folder
    prefix: str = FIRST_DEPLOY
    shipped: bool = False
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    moto_cpu: list[float] = field(default_factory=list)


class SlowS3:
    """Sleeps before every request of the function's S3 clients, and counts their calls."""

    def __init__(self) -> None:
        self.latency_s = 0.0
        self.calls: Counter[str] = Counter()

    def client(self, make: Callable[[str], Any]) -> Callable[[str], Any]:
        def made(service: str) -> Any:
            client = make(service)
            if service == "s3":
                client.meta.events.register("before-call.s3", self._count)
                client.meta.events.register("before-send.s3", self._sleep)
            return client

        return made

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.update([model.name])

    def _sleep(self, **_: Any) -> None:
        time.sleep(self.latency_s)


@dataclass
class Bench:
    server: EmbeddedPostgres
    slow: SlowS3
    folder: Path
    moto_pid: int

    def moto_cpu_s(self) -> float:
        fields = Path(f"/proc/{self.moto_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def invoke(self, prefix: str) -> tuple[float, float, float, dict[str, Any]]:
        """One migrate through the handler: wall, the function's CPU, moto's CPU, the result."""
        os.environ["MIGRATIONS_PREFIX"] = prefix  # the handler reads its environment on every invocation
        wall, cpu, moto = time.perf_counter(), time.process_time(), self.moto_cpu_s()
        result = function.handler({"action": "migrate"}, Context(timeout_s=900))
        return time.perf_counter() - wall, time.process_time() - cpu, self.moto_cpu_s() - moto, result

    def first_deploy(self, mode: Mode) -> None:
        fresh_database(self.server)
        s3source.BODIES.clear()  # a first deploy: a process that has read nothing yet
        with self.reading(mode):
            wall, cpu, moto, result = self.invoke(mode.prefix)
        assert applied(result) == FILES, result
        mode.walls.append(wall)
        mode.cpu.append(cpu)
        mode.moto_cpu.append(moto)
        print(f"first deploy, {mode.name}: {wall:.2f} s (cpu {cpu:.2f} s, moto {moto:.2f} s)", flush=True)

    @contextmanager
    def reading(self, mode: Mode) -> Iterator[None]:
        def local(*_: Any) -> MigrationSource:
            return LocalSource(self.folder)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(self.slow, "latency_s", mode.latency_s)
            if mode.workers is None:
                patch.setattr(function, "_source", local)
            elif mode.workers != DEFAULT_WORKERS:
                patch.setattr(dbmigrate.runner, "ReadAhead", functools.partial(ReadAhead, workers=mode.workers))
                pool = Config(max_pool_connections=max(1, mode.workers))
                patch.setattr(aws_clients, "CLIENT_CONFIG", aws_clients.CLIENT_CONFIG.merge(pool))
                patch.setattr(aws_clients, "_clients", {})
            yield

    def noops(self, latency_s: float, runs: int) -> tuple[list[float], Counter[str], QueryLog]:
        """Timed no-op runs on 5,000 keys, their S3 calls, and one more untimed that logs its queries."""
        fresh_database(self.server)
        _, _, _, result = self.invoke(NOOP)  # the first run, untimed, without latency
        assert applied(result) == NOOP_FILES, result
        self.slow.latency_s = latency_s
        walls: list[float] = []
        calls: Counter[str] = Counter()
        for _ in range(runs):
            self.slow.calls.clear()
            wall, _, _, result = self.invoke(NOOP)
            assert applied(result) == 0, result
            walls.append(wall)
            calls = Counter(self.slow.calls)
            print(f"no-op on {NOOP_FILES} keys: {wall:.3f} s, {dict(calls)}", flush=True)
        with count_queries(self.server) as queries:
            self.invoke(NOOP)
        self.slow.latency_s = 0.0
        return walls, calls, queries


def applied(result: dict[str, Any]) -> int:
    return sum(len(database["applied"]) for database in result["databases"])


@contextmanager
def moto_process(region: str) -> Iterator[tuple[LocalAws, int]]:
    """A moto server in a child process, and its pid."""
    aws = LocalAws(region, port=free_port())  # never started: its environment and clients, served by the child
    code = f"from moto.server import main; main(['-H', '127.0.0.1', '-p', '{aws.port}'])"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                aws.reset()
                break
            except OSError:
                time.sleep(0.1)
        yield aws, child.pid
    finally:
        child.terminate()
        child.wait()


def modes(latency_s: float, workers: list[int], *, file_by_file: bool) -> list[Mode]:
    ms = f"{latency_s * 1000:g}"
    by_file = [Mode("S3 +0 ms, file by file", 0.0, 0), Mode(f"S3 +{ms} ms, file by file", latency_s, 0)]
    return [
        Mode("local folder (LocalSource)"),
        Mode("S3 +0 ms, from the bundle", 0.0, DEFAULT_WORKERS, BUNDLED),
        Mode(f"S3 +0 ms, no bundle, read ahead, {DEFAULT_WORKERS} workers", 0.0, DEFAULT_WORKERS),
        *(by_file if file_by_file else []),
        Mode(f"S3 +{ms} ms, from the bundle", latency_s, DEFAULT_WORKERS, BUNDLED, shipped=True),
        *(Mode(f"S3 +{ms} ms, no bundle, read ahead, {n} workers", latency_s, n) for n in workers),
    ]


def cell(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def section(args: argparse.Namespace, rows: list[Mode], noop: tuple[list[float], Counter[str], QueryLog]) -> str:
    local = statistics.median(rows[0].walls)
    table = [
        f"| {mode.name}{' (as shipped)' if mode.shipped else ''} "
        f"| {cell(mode.walls)} | {statistics.median(mode.walls) / local:.2f}x "
        f"| {statistics.median(mode.cpu):.2f} | {statistics.median(mode.moto_cpu):.2f} |"
        for mode in rows
    ]
    verdicts = ", ".join(
        f"{mode.name.split(', ', 1)[1]} {statistics.median(mode.walls) / local:.2f}x "
        f"({'met' if statistics.median(mode.walls) / local <= TARGET_RATIO else 'MISSED'})"
        for mode in rows
        if mode.latency_s and mode.workers
    )
    walls, calls, queries = noop
    counted = ", ".join(f"{name} x{count}" for name, count in sorted(calls.items()))
    command = f"python -m bench.s3_latency --runs {args.runs} --latency-ms {args.latency_ms:g} --workers " + " ".join(
        str(n) for n in args.workers
    )
    command += " --file-by-file" if args.file_by_file else ""
    return "\n".join(
        [
            "",
            "## S3 latency: a first deploy from the bundle, and read ahead (issue 15)",
            "",
            f"`PYTHONPATH=lambda_src {command}`: the real handler applies `small_set({FILES})` to a fresh "
            f"database from moto S3 (a child process), {args.latency_ms:g} ms slept before every request of the "
            "function's S3 client (a `before-send` hook), against the same handler reading the set's folder. "
            "*From the bundle*: the set uploaded as the stack uploads it (each file with its SHA-256 checksum, "
            "its bundle's parts and index: `dbmigrate.bundle`); *no bundle*: the files alone. "
            f"Median of {args.runs} runs (min-max), modes interleaved, on this 2-core machine shared with other "
            "work (PostgreSQL and moto on the same cores): compare rows, not runs. CPU: seconds of the "
            "function's process (all threads) and of the moto process, medians.",
            "",
            f"| first deploy of {FILES:,} small files | wall (s) | vs local folder | function CPU (s) | moto CPU (s) |",
            "|---|---|---|---|---|",
            *table,
            "",
            f"Target: the S3 first deploy within {TARGET_RATIO}x the local-folder one: {verdicts}.",
            "",
            f"No-op run on {NOOP_FILES:,} keys at +{args.latency_ms:g} ms: {cell(walls, 3)} s; S3 calls: {counted} "
            f"(one listing pass of 1,000-key pages, no body read); the server saw {queries.connections} "
            f"connections and {len(queries.queries)} queries, {queries.history_reads} of them a history read.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The folder's own runs spread by up to 3x (the server's time, not the reads): fewer than 9
    # runs have put one engine's ratio anywhere from 1.14x to 1.30x.
    parser.add_argument("--runs", type=int, default=9, help="runs of each mode (default: %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[DEFAULT_WORKERS], help="read-ahead workers to try")
    parser.add_argument("--file-by-file", action="store_true", help="add the reads before reading ahead")
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    slow = SlowS3()
    rows = modes(args.latency_ms / 1000, args.workers, file_by_file=args.file_by_file)
    with (
        pytest.MonkeyPatch.context() as patch,
        tempfile.TemporaryDirectory(prefix="dbmigrate-s3-latency-") as work,
        moto_process("us-east-1") as (aws, moto_pid),
        EmbeddedPostgres(settings=SERVER_SETTINGS) as server,
    ):
        patch.setattr(aws_clients, "new_client", slow.client(aws_clients.new_client))
        patch.setattr(aws_clients, "_clients", {})
        for name in VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in {**aws.environ, "MIGRATIONS_BUCKET": BUCKET, "DATABASE_URL": server.url()}.items():
            patch.setenv(name, value)
        patch.setenv("LOG_LEVEL", "WARNING")
        aws.bucket(BUCKET)
        folder = write_layouts(small_set(FILES), Path(work) / "small").ours
        aws.upload(BUCKET, _objects(folder), FIRST_DEPLOY)
        aws.upload(BUCKET, _objects(folder), BUNDLED, bundled=True)
        aws.upload(BUCKET, _objects(write_layouts(small_set(NOOP_FILES), Path(work) / "noop").ours), NOOP)
        bench = Bench(server, slow, folder, moto_pid)
        for run in range(args.runs):
            for mode in rows[run % len(rows) :] + rows[: run % len(rows)]:
                bench.first_deploy(mode)
        noop = bench.noops(args.latency_ms / 1000, args.runs)
    text = section(args, rows, noop)
    print(text)
    if args.append:
        with RESULTS.open("a") as results:
            results.write(text)


def _objects(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.sql"))}


if __name__ == "__main__":
    main()
