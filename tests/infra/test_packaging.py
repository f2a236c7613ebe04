"""The Lambda package: built for the runtime's platform, from the locked versions, byte-reproducible."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra.packaging import (
    LOCK_FILE,
    SOURCE_DIR,
    BuildResult,
    PackagingError,
    Target,
    build_package,
    locked_requirements,
    target_python,
)
from local.function import link_boto3

RUNTIME = Target().python_version
# Run by the runtime's Python on the built zip: every module's .pyc is that interpreter's
# bytecode, marked unchecked-hash, of the very source beside it; prints what is not.
CHECK_BYTECODE = """
import importlib.util, sys, zipfile
archive = zipfile.ZipFile(sys.argv[1])
names = set(archive.namelist())
modules = [name for name in names if name.endswith(".py")]
bytecode = [name for name in names if name.endswith(".pyc")]
for name in modules:
    folder, _, module = name.rpartition("/")
    prefix = folder + "/" if folder else ""
    cached = f"{prefix}__pycache__/{module[:-3]}.{sys.implementation.cache_tag}.pyc"
    if cached not in names:
        print("no bytecode for", name)
        continue
    data = archive.read(cached)
    if data[:4] != importlib.util.MAGIC_NUMBER:
        print("not this interpreter's bytecode:", cached)
    if int.from_bytes(data[4:8], "little") != 0b01:
        print("not unchecked-hash:", cached)
    if data[8:16] != importlib.util.source_hash(archive.read(name)):
        print("not compiled from the source beside it:", cached)
print(len(modules), "modules,", len(bytecode), "bytecode files")
"""


def runtime_python() -> str:
    python = target_python(RUNTIME)
    if python is None:
        pytest.skip(f"no python{RUNTIME} on this machine (pyenv install {RUNTIME}): the package has no bytecode")
    return python


def names(result: BuildResult) -> list[str]:
    with zipfile.ZipFile(result.path) as archive:
        return archive.namelist()


def test_two_builds_give_the_same_sha256_whatever_the_file_times_and_modes(tmp_path: Path) -> None:
    source = tmp_path / "lambda_src"
    shutil.copytree(SOURCE_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    first = build_package(tmp_path / "first.zip", source_dir=source)
    for path in source.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o600)
    (source / "dbmigrate" / "__pycache__").mkdir(exist_ok=True)
    (source / "dbmigrate" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"noise")
    second = build_package(tmp_path / "second.zip", source_dir=source)
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


def test_a_changed_source_file_changes_the_hash(tmp_path: Path) -> None:
    source = tmp_path / "lambda_src"
    shutil.copytree(SOURCE_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    before = build_package(tmp_path / "before.zip", source_dir=source)
    with (source / "dbmigrate" / "__init__.py").open("a", encoding="utf-8") as stream:
        stream.write("# changed\n")
    after = build_package(tmp_path / "after.zip", source_dir=source)
    assert before.sha256 != after.sha256


def test_package_holds_the_handler_at_the_root_the_engine_and_cp312_x86_64_dependencies(package: BuildResult) -> None:
    entries = names(package)
    top_level = {path.name for path in SOURCE_DIR.glob("*.py")}
    assert top_level <= set(entries), "every lambda_src/*.py module sits at the zip's root"
    assert "dbmigrate/__init__.py" in entries and "dbmigrate/runner.py" in entries
    assert "psycopg2/_psycopg.cpython-312-x86_64-linux-gnu.so" in entries
    assert any(name.startswith("pglast/parser.cpython-312-x86_64-linux-gnu.so") for name in entries)
    assert any(name.startswith("psycopg2_binary.libs/libpq") for name in entries)
    if (SOURCE_DIR / "handler.py").exists():
        assert "handler.py" in entries


def test_package_leaves_boto3_to_the_runtime_and_carries_no_install_noise(package: BuildResult) -> None:
    entries = names(package)
    roots = {name.split("/")[0] for name in entries}
    assert not roots & {"boto3", "botocore", "s3transfer", "bin"}
    assert not any(name.endswith(("/RECORD", "/INSTALLER", "/direct_url.json")) for name in entries)
    modules = {name.removesuffix(".py") for name in entries if name.endswith(".py")}
    for name in (name for name in entries if "__pycache__" in name or name.endswith(".pyc")):
        folder, _, cached = name.rpartition("__pycache__/")
        assert cached == "" or f"{folder}{cached.removesuffix('.cpython-312.pyc')}" in modules, (
            f"{name}: only the runtime's bytecode of a packaged module"
        )
    assert not any(name.startswith("dbmigrate.egg-info") or name == "pyproject.toml" for name in entries)


def test_every_module_ships_the_runtimes_bytecode_of_its_own_source_never_rechecked(package: BuildResult) -> None:
    python = runtime_python()
    checked = subprocess.run(
        [python, "-I", "-c", CHECK_BYTECODE, str(package.path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    *problems, counts = checked.stdout.splitlines()
    assert problems == []
    modules, _, bytecode, *_ = counts.split()
    assert int(modules) == int(bytecode) > 50


def test_the_runtime_imports_the_handler_from_the_shipped_bytecode_alone(package: BuildResult, tmp_path: Path) -> None:
    """/var/task is read-only: a module not shipped compiled is compiled at every cold start."""
    python = runtime_python()
    task = tmp_path / "task"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(task)
    for module in ("handler.py", "dbmigrate/runner.py", "dbmigrate/cli.py", "psycopg2/extensions.py"):
        (task / module).write_text("raise ImportError('the source was compiled, not the shipped bytecode')\n")
    code = "import sys; sys.path[:0] = sys.argv[1:]; import handler, dbmigrate.cli; print(handler.handler.__name__)"
    paths = [str(task), str(link_boto3(tmp_path / "runtime"))]
    imported = subprocess.run(
        [python, "-I", "-S", "-B", "-c", code, *paths], capture_output=True, text=True, cwd=task, check=False
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip() == "handler"


def test_without_the_runtimes_python_the_package_ships_no_bytecode_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with caplog.at_level(logging.WARNING, logger="infra.packaging"):
        result = build_package(tmp_path / "lambda.zip", Target(python_version="3.13"))
    assert not any(name.endswith(".pyc") for name in result.entries)
    assert "no python3.13 on this machine: the package ships no bytecode" in caplog.text
    assert "pyenv install 3.13" in caplog.text


def test_dependency_versions_are_the_ones_pinned_in_pipfile_lock(package: BuildResult) -> None:
    entries = set(names(package))
    for requirement in locked_requirements():
        dist_info = f"{requirement.name.replace('-', '_')}-{requirement.version}.dist-info/METADATA"
        assert dist_info in entries, dist_info
        assert requirement.version == json.loads(LOCK_FILE.read_text())["default"][requirement.name]["version"][2:]


def test_entries_are_sorted_with_fixed_times_and_modes(package: BuildResult) -> None:
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {info.filename: info.external_attr >> 16 for info in infos}
    assert modes["dbmigrate/model.py"] == 0o100644
    assert modes["dbmigrate/"] == 0o040755
    assert modes["psycopg2/_psycopg.cpython-312-x86_64-linux-gnu.so"] == 0o100755


def test_arm64_package_carries_aarch64_native_modules(tmp_path: Path) -> None:
    result = build_package(tmp_path / "arm64.zip", Target("arm64"))
    entries = names(result)
    assert "psycopg2/_psycopg.cpython-312-aarch64-linux-gnu.so" in entries
    assert not any("x86_64" in name for name in entries)


def test_a_dependency_missing_from_the_lock_is_refused_with_the_fix(tmp_path: Path) -> None:
    lock = tmp_path / "Pipfile.lock"
    lock.write_text(json.dumps({"default": {"pglast": {"version": "==8.8", "hashes": ["sha256:00"]}}}))
    with pytest.raises(PackagingError, match=r"psycopg2-binary is not pinned.*pipenv lock"):
        locked_requirements(lock)
