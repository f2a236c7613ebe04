"""Timing a tool's processes, resetting the database, and counting what reached the server.

Wall time covers every process of a run (psql per file is thousands of processes);
peak memory is the largest maximum resident set size among them, from ``wait4``.
Queries are counted from the server log with ``log_statement = all``, in a separate
untimed run (logging every statement would slow the timed ones).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from local.postgres import EmbeddedPostgres

from .sets import DATABASE

__all__ = ["QueryLog", "Sample", "ToolFailedError", "count_queries", "fresh_database", "run_measured"]

ADMIN_APP = "bench-admin"
# The application name may hold spaces (ours: "dbmigrate-run <run id>").
LOG_LINE = re.compile(
    r"^\S+ \S+ \S+ \[\d+\] (?P<db>\S*) (?P<app>.*?) LOG:  (?P<what>statement|execute [^:]*): (?P<q>.*)"
)
CONNECTION = re.compile(r"LOG:  connection authorized")


class ToolFailedError(RuntimeError):
    """A tool exited non-zero: the benchmark stops rather than time a failure."""


@dataclass(frozen=True)
class Sample:
    """One measured run: wall seconds, CPU seconds of the tool's processes (user + system),
    peak RSS of the largest process (KiB), processes. CPU time is what the tool itself
    costs, and moves less than wall time when other work shares the machine."""

    seconds: float
    cpu_s: float
    max_rss_kib: int
    processes: int


@dataclass
class QueryLog:
    """What one run sent to the server: connections and queries (first line of each)."""

    connections: int = 0
    queries: list[str] = field(default_factory=list)
    history_reads: int = 0


def run_measured(commands: Sequence[Sequence[str]], *, env: dict[str, str], log: Path) -> Sample:
    """Run ``commands`` one after another; raise ToolFailedError on a non-zero exit."""
    peak = 0
    cpu = 0.0
    started = time.perf_counter()
    with log.open("ab") as out:
        for command in commands:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                out.flush()
                tail = log.read_text(errors="replace")[-3000:]
                raise ToolFailedError(f"{' '.join(command[:3])} ... exited {process.returncode}:\n{tail}")
            peak = max(peak, usage.ru_maxrss)
            cpu += usage.ru_utime + usage.ru_stime
    return Sample(time.perf_counter() - started, cpu, peak, len(commands))


def _admin(server: EmbeddedPostgres) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(server.dsn("postgres"), application_name=ADMIN_APP)
    conn.autocommit = True
    return conn


def fresh_database(server: EmbeddedPostgres) -> None:
    """Drop and re-create the benchmark database, then checkpoint so runs start alike."""
    conn = _admin(server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {DATABASE}")
            cur.execute("CHECKPOINT")
    finally:
        conn.close()


@contextmanager
def count_queries(server: EmbeddedPostgres) -> Iterator[QueryLog]:
    """Log every statement while the block runs; the yielded QueryLog is filled on exit."""
    result = QueryLog()
    _set_logging(server, on=True)
    offset = server.log_file.stat().st_size
    try:
        yield result
    finally:
        time.sleep(0.1)  # let the server flush its last log lines
        with server.log_file.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        _set_logging(server, on=False)
    for line in lines:
        if CONNECTION.search(line):
            result.connections += 1
            continue
        match = LOG_LINE.match(line)
        if match and match["app"] != ADMIN_APP:
            query = match["q"]
            result.queries.append(query if len(query) <= 160 else query[:150] + " ...")
            if query.lstrip().upper().startswith("SELECT") and "history" in query:
                result.history_reads += 1


def _set_logging(server: EmbeddedPostgres, *, on: bool) -> None:
    conn = _admin(server)
    try:
        with conn.cursor() as cur:
            if on:
                cur.execute("ALTER SYSTEM SET log_statement = 'all'")
                cur.execute("ALTER SYSTEM SET log_connections = on")
                cur.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %d %a '")
            else:
                cur.execute("ALTER SYSTEM RESET log_statement")
                cur.execute("ALTER SYSTEM RESET log_connections")
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()
    time.sleep(0.3)  # the postmaster applies the reload asynchronously
