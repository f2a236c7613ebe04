"""The Lambda's numbers: package size, cold import of the handler, a no-op run on 5,000 files.

The no-op run uses moto's in-process S3 (``mock_aws``) and the benchmark's PostgreSQL:
the handler applies the files once, then is timed on a second invocation with nothing
to do, counting the S3 calls it makes. It runs in a child process
(``python -m bench.lambda_numbers``) so that its imports and moto stay out of the
benchmark's own process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from local.postgres import EmbeddedPostgres

from .measure import fresh_database
from .sets import DATABASE, small_set
from .tools import REPO

__all__ = ["measure"]

LAMBDA_SRC = REPO / "lambda_src"
BUCKET = "bench-migrations"
PREFIX = "migrations/"
IMPORT_RUNS = 7
PACKAGE_TARGET_MB = 15
IMPORT_TARGET_MS = 200  # issue 15; bench/startup.py measures it with its importtime
# What the Lambda Python runtime provides beside the package (infra/packaging.py leaves them out).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")


def measure(
    server: EmbeddedPostgres, work: Path, *, files: int, lambda_src: Path | None = None, quick: bool = False
) -> dict[str, Any]:
    """Every Lambda number that can be measured here; a TODO line for the others.

    ``lambda_src`` is the folder of the handler and engine (default: the work tree's).
    ``quick`` skips building the zip (and the imports from it).
    """
    source = lambda_src if lambda_src and (lambda_src / "handler.py").is_file() else LAMBDA_SRC
    numbers: dict[str, Any] = {"handler and engine from": str(source.relative_to(REPO))}
    numbers["package size"], package = ("not built (--quick)", None) if quick else _package(work)
    runtime = _runtime_path(package, work) if package else None
    if runtime:
        root, python = runtime
        path = os.pathsep.join([str(root / "task"), str(root / "runtime")])
        label = f"cold import of handler from the unpacked zip, {Path(python).name}, median of {IMPORT_RUNS}"
        # /var/task is read-only (-B): a cold start has the bytecode the zip ships, and compiles the rest.
        numbers[f"{label}, as shipped"] = _cold_import(python, path, bytecode=False)
        numbers[f"{label}, with bytecode cached"] = _cold_import(python, path)
    if (source / "handler.py").is_file():
        label = f"cold import of handler from {source.name}/, python{sys.version.split()[0]} (median of {IMPORT_RUNS})"
        numbers[label] = _cold_import(sys.executable, str(source))
        numbers[f"no-op handler run on {files} files in moto S3"] = _noop_run(server, work, files, source)
    else:
        numbers["handler"] = f"TODO: {source}/handler.py does not exist (yet)"
    return numbers


def _package(work: Path) -> tuple[str, Path | None]:
    """Build the deployment zip with the project's own packaging; its size line and path."""
    if not (REPO / "infra" / "packaging.py").is_file():
        return "TODO: infra/packaging.py does not exist yet; re-run the benchmark once it does", None
    output = work / "lambda.zip"
    result = subprocess.run(
        [sys.executable, "-m", "infra.packaging", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not output.is_file():
        return f"TODO: `python -m infra.packaging` failed: {(result.stderr or result.stdout).strip()[-300:]}", None
    size = output.stat().st_size
    unpacked = sum(info.file_size for info in zipfile.ZipFile(output).infolist())
    verdict = "met" if size < PACKAGE_TARGET_MB * 1024 * 1024 else "MISSED"
    line = (
        f"{size / 1024 / 1024:.1f} MiB zipped, {unpacked / 1024 / 1024:.1f} MiB unpacked "
        f"(target < {PACKAGE_TARGET_MB} MB zipped: {verdict}; `python -m infra.packaging`, x86_64)"
    )
    return line, output


def _python312() -> Path | None:
    """The Lambda runtime's Python (3.12) from pyenv, when this machine has it."""
    found = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    return found[-1] if found else None


def _runtime_path(package: Path, work: Path) -> tuple[Path, str] | None:
    """The unpacked zip plus what the Lambda runtime brings (boto3 and its dependencies), for 3.12."""
    python = _python312()
    if python is None:
        return None
    root = work / "lambda-unpacked"
    shutil.rmtree(root, ignore_errors=True)
    zipfile.ZipFile(package).extractall(root / "task")
    runtime = root / "runtime"
    runtime.mkdir()
    site_packages = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for name in RUNTIME_PROVIDED:
        source = site_packages / name
        if source.exists():
            (runtime / name).symlink_to(source)
    return root, str(python)


def _cold_import(python: str, path: str, *, bytecode: bool = True) -> str:
    """Median time of ``import handler`` in fresh interpreters (after one run that writes bytecode)."""
    code = (
        "import sys, time; sys.path[:0] = sys.argv[1].split(':'); t = time.perf_counter(); import handler; "
        "print(time.perf_counter() - t)"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    times = []
    for _ in range(IMPORT_RUNS + 1):
        flags = ["-I"] if bytecode else ["-I", "-B"]
        result = subprocess.run(
            [python, *flags, "-c", code, path], capture_output=True, text=True, check=False, env=env
        )
        if result.returncode != 0:
            return f"TODO: importing the handler failed: {result.stderr.strip()[-300:]}"
        times.append(float(result.stdout.strip()))
    times = times[1:]
    median_ms = statistics.median(times) * 1000
    verdict = "met" if median_ms < IMPORT_TARGET_MS else "MISSED"
    return f"{median_ms:.0f} ms (target < {IMPORT_TARGET_MS} ms: {verdict})"


def _noop_run(server: EmbeddedPostgres, work: Path, files: int, source: Path) -> str:
    if importlib.util.find_spec("moto") is None:
        return "TODO: moto is not installed in this environment"
    fresh_database(server)
    out = work / "lambda-noop.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(REPO)])}
    subprocess.run(
        [sys.executable, "-m", "bench.lambda_numbers", server.url(), str(files), str(out)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result = json.loads(out.read_text())
    calls = ", ".join(f"{name} x{count}" for name, count in sorted(result["s3_calls"].items()))
    verdict = "met" if result["noop_s"] < 0.5 else "MISSED"
    return (
        f"{result['noop_s'] * 1000:.0f} ms (target < 500 ms: {verdict}); S3 calls: {calls} "
        f"({result['pages']} listing page(s) of up to 1,000 keys); first run applied {result['applied']} files "
        f"in {result['apply_s']:.1f} s"
    )


def _child(url: str, files: int, out: Path) -> None:
    """In a fresh process: fill moto S3, apply once through the handler, time the no-op run."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MIGRATIONS_BUCKET": BUCKET,
            "MIGRATIONS_PREFIX": PREFIX,
            "DATABASE_URL": url,
            "LOG_LEVEL": "WARNING",
        }
    )
    import boto3  # noqa: PLC0415 - after the environment is set
    from moto import mock_aws  # noqa: PLC0415

    calls: Counter[str] = Counter()
    counting = False

    def count(model: Any, **_: Any) -> None:
        if counting:
            calls.update([model.name])

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for migration in small_set(files).migrations:
            key = f"{PREFIX}{DATABASE}/{migration.version}_{migration.description}.up.sql"
            s3.put_object(Bucket=BUCKET, Key=key, Body=migration.sql.encode())
        # Count the calls of the clients the function makes (aws_clients creates them with botocore).
        import aws_clients  # noqa: PLC0415
        from handler import handler  # noqa: PLC0415

        make_client = aws_clients.new_client

        def counted_client(service: str) -> Any:
            client = make_client(service)
            client.meta.events.register(f"before-call.{service}", count)
            return client

        aws_clients.new_client = counted_client

        started = time.perf_counter()
        applied = handler({"action": "migrate"}, None)
        apply_s = time.perf_counter() - started
        counting = True
        started = time.perf_counter()
        handler({"action": "migrate"}, None)
        noop_s = time.perf_counter() - started
    applied_files = sum(len(d["applied"]) for d in applied["databases"])
    result = {"apply_s": apply_s, "noop_s": noop_s, "applied": applied_files, "s3_calls": dict(calls)}
    result["pages"] = calls.get("ListObjectsV2", 0)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
