"""Start-up: the CLI's no-op run and the handler's cold import from the packaged zip.

``.venv/bin/python -m bench.startup`` (about a minute; the first run also compiles the
runtime's boto3 for python3.12, once):

- **CLI**: ``dbmigrate status --dir migrations --database-url ...`` on the example
  migrations, applied once before, on a throwaway PostgreSQL: wall time of the whole
  process (interpreter start, imports, two connections, one history query per database,
  exit). Measured from a copy of ``lambda_src`` two ways: with its bytecode compiled
  (an installed package, or any run after the first) and with none (the first run of an
  editable install, or every run where ``PYTHONDONTWRITEBYTECODE`` is set, as on this
  machine); the environment's own packages keep their bytecode either way.
- **Handler**: ``import handler`` in a fresh python3.12 with only the unpacked zip and the
  runtime's boto3 on its path (as tests/integration/test_lambda_zip.py runs it), timed
  inside the interpreter; ``-B``, as /var/task is read-only: what the zip ships is what
  there is. Once as shipped, once with the zip's ``__pycache__`` folders removed. The
  runtime's boto3 and botocore are taken as having their bytecode (compiled here once).

Median of ``--runs`` (default 10) after one untimed run, and one ``-X importtime`` run of
each, summed by top-level package and listed by the modules' own time (importtime adds
its own overhead: its total is above the timed median). Nothing asserts on a time.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from local.function import PASSED_THROUGH, link_boto3, runtime_python
from local.postgres import EmbeddedPostgres

from .tools import REPO

__all__ = ["ImportEntry", "Timing", "main", "parse_importtime"]

RUNS = 10
TOP = 12
CLI_TARGET_S = 0.12
HANDLER_TARGET_MS = 200
MIGRATIONS = REPO / "migrations"
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)\s*$")
# In the fresh interpreter: the zip and the runtime's boto3 first on the path, then time the import.
COLD_IMPORT = (
    "import sys, time; sys.path[:0] = sys.argv[1:3]; t, c = time.perf_counter(), time.process_time(); "
    "import handler; print(time.perf_counter() - t, time.process_time() - c)"
)


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of the timed runs (the untimed first run left out). CPU time
    (user + system) moves less than wall time when other work shares the machine."""

    samples: tuple[float, ...]
    cpu: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def ms(self) -> str:
        return f"{self.median * 1000:.0f} ms ({min(self.samples) * 1000:.0f}-{max(self.samples) * 1000:.0f})"

    def cpu_ms(self) -> str:
        return f"{statistics.median(self.cpu) * 1000:.0f} ms"


@dataclass(frozen=True)
class ImportEntry:
    """One line of ``-X importtime``: the module, its own and its cumulative microseconds, its depth."""

    module: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """The ``import time:`` lines of a run's stderr (other lines ignored)."""
    entries = []
    for line in stderr.splitlines():
        match = IMPORTTIME.match(line)
        if match:
            own, cumulative, indent, module = match.groups()
            entries.append(ImportEntry(module, int(own), int(cumulative), len(indent) // 2))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each (default: %(default)s)")
    parser.add_argument("--top", type=int, default=TOP, help="importtime entries listed (default: %(default)s)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI")
    parser.add_argument("--no-handler", action="store_true", help="skip the handler")
    parser.add_argument(
        "--lambda-src", type=Path, default=REPO / "lambda_src", help="the handler and engine to measure"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dbmigrate-startup-"))
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    try:
        if not args.no_cli:
            _cli(args.lambda_src, work, args.runs, args.top)
        if not args.no_handler:
            _handler(args.lambda_src, work, args.runs, args.top)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


# -- the CLI ---------------------------------------------------------------------------------


def _cli(lambda_src: Path, work: Path, runs: int, top: int) -> None:
    compiled, source = work / "cli-compiled", work / "cli-source"
    for copy in (compiled, source):
        shutil.copytree(lambda_src / "dbmigrate", copy / "dbmigrate", ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(compiled, quiet=1)
    script = Path(sys.executable).with_name("dbmigrate")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "dbmigrate"]
    with EmbeddedPostgres() as server:
        status = [*command, "status", "--dir", str(MIGRATIONS), "--database-url", server.url()]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        up = [*command, "up", *status[-4:]]
        subprocess.run(up, env={**env, "PYTHONPATH": str(compiled)}, check=True, capture_output=True)
        print(f"\nCLI no-op: `dbmigrate status` on {MIGRATIONS.relative_to(REPO)}/ (applied), median of {runs}")
        print("\n| dbmigrate's bytecode | wall time: median (min-max) | CPU time | target |\n|---|---|---|---|")
        for label, tree in (("compiled", compiled), ("none (compiled at every start)", source)):
            timing = _time_processes(status, {**env, "PYTHONPATH": str(tree)}, runs)
            verdict = "met" if timing.median < CLI_TARGET_S else "missed"
            print(f"| {label} | {timing.ms()} | {timing.cpu_ms()} | < {CLI_TARGET_S * 1000:.0f} ms: {verdict} |")
        profiled = subprocess.run(
            status,
            env={**env, "PYTHONPATH": str(compiled), "PYTHONPROFILEIMPORTTIME": "1"},
            capture_output=True,
            text=True,
            check=True,
        )
    _print_importtime("CLI, bytecode compiled", parse_importtime(profiled.stderr), top)


def _time_processes(command: list[str], env: dict[str, str], runs: int) -> Timing:
    samples, cpu = [], []
    for _ in range(runs + 1):
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        samples.append(time.perf_counter() - started)
        cpu.append(usage.ru_utime + usage.ru_stime)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(command[:2])} ... failed")
    return Timing(tuple(samples[1:]), tuple(cpu[1:]))


# -- the handler -----------------------------------------------------------------------------


def _handler(lambda_src: Path, work: Path, runs: int, top: int) -> None:
    from infra.packaging import build_package  # noqa: PLC0415 (only this half needs the packaging)

    python, is_runtime = runtime_python("3.12")
    if not is_runtime:
        print("\nHandler: skipped, pyenv has no python3.12 (the Lambda runtime's version)")
        return
    package = build_package(work / "lambda.zip", source_dir=lambda_src)
    shipped, source = work / "task-shipped", work / "task-source"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(shipped)
        pycs = sum(1 for name in archive.namelist() if name.endswith(".pyc"))
    shutil.copytree(shipped, source, ignore=shutil.ignore_patterns("__pycache__"))
    runtime = link_boto3(work / "runtime")
    _compile_runtime(python, runtime)
    size = f"{package.size / 1024 / 1024:.1f} MiB, {len(package.entries)} entries, {pycs} .pyc"
    print(f"\nHandler cold import: `import handler` from the zip ({size}), {Path(python).name} -I -S -B")
    print(f"median of {runs}\n\n| the zip's modules | import handler: median (min-max) | CPU time | target |")
    print("|---|---|---|---|")
    clean = {name: value for name, value in os.environ.items() if name in PASSED_THROUGH}
    for label, task in (("as shipped", shipped), ("without the zip's bytecode", source)):
        command = [python, "-I", "-S", "-B", "-c", COLD_IMPORT, str(task), str(runtime)]
        timing = _time_in_interpreter(command, clean, runs)
        verdict = "met" if timing.median * 1000 < HANDLER_TARGET_MS else "missed"
        print(f"| {label} | {timing.ms()} | {timing.cpu_ms()} | < {HANDLER_TARGET_MS} ms: {verdict} |")
    profiled = subprocess.run(
        [python, "-I", "-S", "-B", "-X", "importtime", "-c", COLD_IMPORT, str(shipped), str(runtime)],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    _print_importtime("handler, as shipped", parse_importtime(profiled.stderr), top)


def _compile_runtime(python: str, runtime: Path) -> None:
    """Bytecode for the runtime's packages (linked from this environment), as the runtime has it.

    A linked package's bytecode is written beside its sources (compileall does not follow
    the link itself), a linked module's (six.py) where it is imported from; once.
    """
    folders = [str(path.resolve()) for path in sorted(runtime.iterdir()) if path.is_dir()]
    files = [str(path) for path in sorted(runtime.iterdir()) if path.suffix == ".py"]
    code = (
        "import compileall, sys; ok = all([compileall.compile_dir(d, quiet=1) for d in sys.argv[1:] "
        "if not d.endswith('.py')] + [compileall.compile_file(f, quiet=1) for f in sys.argv[1:] "
        "if f.endswith('.py')]); sys.exit(0 if ok else 1)"
    )
    subprocess.run([python, "-I", "-c", code, *folders, *files], check=True, stdout=subprocess.DEVNULL)


def _time_in_interpreter(command: list[str], env: dict[str, str], runs: int) -> Timing:
    samples, cpu = [], []
    for _ in range(runs + 1):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"importing the handler failed: {result.stderr.strip()[-500:]}")
        wall, used = result.stdout.split()
        samples.append(float(wall))
        cpu.append(float(used))
    return Timing(tuple(samples[1:]), tuple(cpu[1:]))


# -- importtime ------------------------------------------------------------------------------


def _print_importtime(title: str, entries: list[ImportEntry], top: int) -> None:
    total = sum(entry.self_us for entry in entries)
    by_package: dict[str, int] = defaultdict(int)
    for entry in entries:
        by_package[entry.module.split(".")[0]] += entry.self_us
    print(f"\n-X importtime, {title}: {len(entries)} modules, {total / 1000:.1f} ms in all")
    print("\n| package | own time of its modules (ms) |\n|---|---|")
    for package, micros in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        print(f"| {package} | {micros / 1000:.1f} |")
    print("\n| module | own (ms) | with what it imports (ms) |\n|---|---|---|")
    for entry in sorted(entries, key=lambda item: -item.self_us)[:top]:
        print(f"| {entry.module} | {entry.self_us / 1000:.1f} | {entry.cumulative_us / 1000:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
