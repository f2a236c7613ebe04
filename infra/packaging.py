"""The migration Lambda's deployment package: a byte-reproducible zip.

``python -m infra.packaging [--arch x86_64|arm64] [--output PATH]`` (or ``make package``)
builds ``build/lambda.zip``: the handler's modules (every ``lambda_src/*.py``), the
``dbmigrate`` package, and the runtime dependencies installed for the Lambda's Python
and architecture (not this machine's) at the versions and hashes pinned in
``Pipfile.lock``. boto3 is left to the runtime. Entries are sorted and carry fixed
timestamps and modes, and nothing that varies between installs is kept (``__pycache__``,
``RECORD``, console scripts), so two builds of the same sources have the same sha256.

Every module also ships its bytecode, compiled by the runtime's Python version (found on
this machine: pyenv's or on the PATH) in unchecked-hash mode: /var/task is read-only, so
without it every cold start compiles every module it imports. The ``.pyc`` files hold no
timestamp and no path of this machine, so they stay byte-reproducible for a given
interpreter build; without that interpreter the zip ships no bytecode and the
build says so.

Downloaded wheels are kept in ``build/wheels/`` and the installed tree in
``build/site/``; a second build runs no pip at all.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dbmigrate.errors import MigrationError

__all__ = [
    "CA_BUNDLE_ENTRY",
    "RUNTIME_DEPENDENCIES",
    "BuildResult",
    "LockedRequirement",
    "PackagingError",
    "Target",
    "build_package",
    "locked_requirements",
    "target_python",
]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "lambda_src"
LOCK_FILE = ROOT / "Pipfile.lock"
BUILD_DIR = ROOT / "build"

CA_BUNDLE_ENTRY = "certs/db-ca.pem"
"""Where a database CA bundle lands in the package (``build_package(ca_bundle=...)``)."""
RUNTIME_DEPENDENCIES = ("psycopg2-binary", "pglast")
"""What the function needs beyond the runtime (which brings boto3)."""
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")

Architecture = Literal["x86_64", "arm64"]
RUNTIME_GLIBC_MINOR = {"3.11": 26, "3.12": 34, "3.13": 34}
"""glibc 2.x of the Lambda runtime's OS, by Python version (Amazon Linux 2023)."""
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIRECTORY_MODE = 0o755
COMPRESS_LEVEL = 6  # zlib's default: level 9 takes five times as long for 1% less
# pip writes these per install (paths, installer name, hashes of files we drop); they vary.
INSTALL_NOISE = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
# Build inputs and type stubs that wheels ship beside their compiled modules; never imported.
NOT_IMPORTED = frozenset({".c", ".h", ".pyx", ".pxd", ".pyi"})
# Run by the target's Python: compile each (source, name in the zip, .pyc) read from stdin.
# The name, not this machine's path, is recorded (the loader replaces it by where the file is).
COMPILE_SCRIPT = """
import json, py_compile, sys
for source, name, target in json.load(sys.stdin):
    py_compile.compile(source, cfile=target, dfile=name, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


class PackagingError(MigrationError):
    """The package cannot be built; the message says what to fix."""


@dataclass(frozen=True)
class Target:
    """The Lambda runtime the package is built for."""

    architecture: Architecture = "x86_64"
    python_version: str = "3.12"

    @property
    def machine(self) -> str:
        return "x86_64" if self.architecture == "x86_64" else "aarch64"

    @property
    def platforms(self) -> list[str]:
        """pip ``--platform`` tags the runtime accepts: manylinux up to its glibc, newest first.

        The python3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34); pip does not expand
        ``manylinux_2_X`` tags by itself, so every one down to manylinux2014 is listed
        (psycopg2-binary ships its aarch64 wheel as manylinux_2_28, x86_64 as manylinux2014).
        """
        glibc_minor = RUNTIME_GLIBC_MINOR[self.python_version]
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(glibc_minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]

    @property
    def runtime(self) -> str:
        """The Lambda runtime identifier, e.g. ``python3.12``."""
        return f"python{self.python_version}"

    @property
    def extension_suffix(self) -> str:
        """The file suffix of a native module built for this target."""
        return f".cpython-{self.python_version.replace('.', '')}-{self.machine}-linux-gnu.so"

    @property
    def cache_tag(self) -> str:
        """What the runtime's bytecode files are named with (``sys.implementation.cache_tag``)."""
        return f"cpython-{self.python_version.replace('.', '')}"

    @property
    def slug(self) -> str:
        return f"py{self.python_version.replace('.', '')}-{self.architecture}"

    def default_output(self) -> Path:
        """``build/lambda.zip`` for x86_64, ``build/lambda-arm64.zip`` for arm64."""
        return BUILD_DIR / ("lambda.zip" if self.architecture == "x86_64" else f"lambda-{self.architecture}.zip")


@dataclass(frozen=True)
class LockedRequirement:
    """One dependency as pinned in Pipfile.lock: exact version and the accepted file hashes."""

    name: str
    version: str
    hashes: tuple[str, ...]

    @property
    def wheel_prefix(self) -> str:
        """How this release's wheel file names start (PEP 427 escaping)."""
        return f"{self.name.replace('-', '_').lower()}-{self.version}-"

    def requirement_line(self) -> str:
        hashes = " ".join(f"--hash={value}" for value in self.hashes)
        return f"{self.name}=={self.version} {hashes}"


@dataclass(frozen=True)
class BuildResult:
    """A built package: where it is, its sha256 (hex) and size, and its entry names."""

    path: Path
    sha256: str
    size: int
    entries: tuple[str, ...]

    @property
    def source_code_hash(self) -> str:
        """The base64 sha256 that ``aws_lambda_function.source_code_hash`` expects."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


def locked_requirements(
    lock_file: Path = LOCK_FILE, names: Iterable[str] = RUNTIME_DEPENDENCIES
) -> list[LockedRequirement]:
    """Read the pinned version and hashes of each name from the lock's ``default`` section."""
    try:
        lock = json.loads(lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackagingError(f"cannot read {lock_file}: {exc}") from exc
    pinned: Mapping[str, Mapping[str, object]] = lock.get("default", {})
    found = []
    for name in names:
        entry = pinned.get(name)
        version = entry.get("version") if entry else None
        hashes = entry.get("hashes") if entry else None
        if not isinstance(version, str) or not version.startswith("==") or not isinstance(hashes, list) or not hashes:
            raise PackagingError(
                f"{name} is not pinned with hashes in {lock_file.name}: add it to the Pipfile's [packages] "
                "and run `pipenv lock`"
            )
        found.append(LockedRequirement(name, version.removeprefix("=="), tuple(str(value) for value in hashes)))
    return found


def build_package(
    output: Path | None = None,
    target: Target = Target(),
    *,
    source_dir: Path = SOURCE_DIR,
    ca_bundle: Path | None = None,
) -> BuildResult:
    """Build the zip for ``target`` and return what was built (the same bytes for the same inputs).

    ``ca_bundle``: a PEM file of CA certificates, packed as ``CA_BUNDLE_ENTRY`` for TLS
    verification of the database (the RDS global bundle).
    """
    output = output or target.default_output()
    requirements = locked_requirements(LOCK_FILE)
    wheels = _fetch_wheels(requirements, target, BUILD_DIR / "wheels" / target.slug)
    site = _installed_tree(wheels, target, BUILD_DIR / "site")
    files = {**_dependency_files(site, target), **_source_files(source_dir)}
    if ca_bundle is not None:
        files[CA_BUNDLE_ENTRY] = _checked_ca_bundle(ca_bundle)
    with tempfile.TemporaryDirectory() as bytecode_dir:
        files.update(_bytecode(files, target, Path(bytecode_dir)))
        return _write_zip(files, output)


def _checked_ca_bundle(path: Path) -> Path:
    """The bundle, if it is a readable PEM file with at least one certificate."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise PackagingError(f"the CA bundle {path} cannot be read ({exc}): point db_ca_bundle at a PEM file") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise PackagingError(
            f"the CA bundle {path} holds no PEM certificate: use the RDS global bundle (global-bundle.pem)"
        )
    return path


def _fetch_wheels(requirements: Sequence[LockedRequirement], target: Target, wheel_dir: Path) -> list[Path]:
    """The locked wheels for ``target``, from the cache or downloaded (hash-checked) into it."""
    cached = {req.name: _cached_wheel(req, wheel_dir) for req in requirements}
    missing = [req for req in requirements if cached[req.name] is None]
    if missing:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            requirement_file = Path(tmp) / "requirements.txt"
            requirement_file.write_text("".join(req.requirement_line() + "\n" for req in missing), encoding="utf-8")
            _pip(
                "download",
                "--dest",
                str(wheel_dir),
                "--requirement",
                str(requirement_file),
                "--require-hashes",
                "--no-deps",
                *_platform_flags(target),
            )
        cached.update({req.name: _cached_wheel(req, wheel_dir) for req in missing})
    wheels = []
    for req in requirements:
        wheel = cached[req.name]
        if wheel is None:
            raise PackagingError(f"pip found no {target.runtime} {target.machine} wheel of {req.name}=={req.version}")
        wheels.append(wheel)
    return wheels


def _cached_wheel(requirement: LockedRequirement, wheel_dir: Path) -> Path | None:
    if not wheel_dir.is_dir():
        return None
    for wheel in sorted(wheel_dir.glob("*.whl")):
        if wheel.name.lower().startswith(requirement.wheel_prefix) and f"sha256:{_sha256(wheel)}" in requirement.hashes:
            return wheel
    return None


def _installed_tree(wheels: Sequence[Path], target: Target, site_root: Path) -> Path:
    """The wheels installed into a folder named after their hashes; installed once."""
    digest = hashlib.sha256("".join(_sha256(wheel) for wheel in wheels).encode()).hexdigest()[:16]
    site = site_root / f"{target.slug}-{digest}"
    if (site / ".complete").is_file():
        return site
    site_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{site.name}-", dir=site_root))
    try:
        _pip(
            "install",
            "--target",
            str(staging),
            "--no-index",
            "--no-deps",
            "--no-compile",
            *_platform_flags(target),
            *(str(wheel) for wheel in wheels),
        )
        (staging / ".complete").touch()
        if not (site / ".complete").is_file():  # else a concurrent build finished first: use its tree
            shutil.rmtree(site, ignore_errors=True)
            staging.rename(site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return site


def _platform_flags(target: Target) -> list[str]:
    platforms = [flag for platform in target.platforms for flag in ("--platform", platform)]
    return [
        *platforms,
        "--python-version",
        target.python_version,
        "--implementation",
        "cp",
        "--only-binary=:all:",
    ]


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise PackagingError(f"pip {args[0]} failed: {' / '.join(detail)}")


def _dependency_files(site: Path, target: Target) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(site)
        parts = relative.parts
        if parts[0] in {"bin", ".complete"} or "__pycache__" in parts or path.suffix in {".pyc", *NOT_IMPORTED}:
            continue
        if parts[0].endswith(".dist-info") and relative.name in INSTALL_NOISE:
            continue
        if parts[0] in PROVIDED_BY_RUNTIME:
            raise PackagingError(f"{parts[0]} would be packaged, but the Lambda runtime provides it")
        files[relative.as_posix()] = path
    native = [name for name in files if name.endswith(".so") and ".cpython-" in name]
    wrong = [name for name in native if not name.endswith(target.extension_suffix)]
    if wrong:
        raise PackagingError(f"native modules for another platform in the package: {', '.join(wrong)}")
    return files


def _source_files(source_dir: Path) -> dict[str, Path]:
    """The handler's top-level modules and the dbmigrate package, as they are on disk."""
    files = {path.name: path for path in sorted(source_dir.glob("*.py")) if path.is_file()}
    package = source_dir / "dbmigrate"
    if not (package / "__init__.py").is_file():
        raise PackagingError(f"{package} is not a package (no __init__.py)")
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(source_dir)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix not in {".pyc", ".pyo"}:
            files[relative.as_posix()] = path
    if "handler.py" not in files:
        log.warning("%s does not exist: the package has no Lambda entry point", source_dir / "handler.py")
    return files


def _bytecode(files: Mapping[str, Path], target: Target, folder: Path) -> dict[str, Path]:
    """The ``<dir>/__pycache__/<module>.<tag>.pyc`` entry of every ``.py`` entry, compiled into ``folder``.

    Nothing (and a warning) when the target's Python is not on this machine.
    """
    python = target_python(target.python_version)
    if python is None:
        log.warning(
            "no python%s on this machine: the package ships no bytecode, so each cold start compiles what it "
            "imports and the zip differs from one built with it; install it (pyenv install %s) and build again",
            target.python_version,
            target.python_version,
        )
        return {}
    jobs, entries = [], {}
    for index, name in enumerate(sorted(name for name in files if name.endswith(".py"))):
        folder_name, _, module = name.rpartition("/")
        entry = f"{folder_name}/" if folder_name else ""
        entry += f"__pycache__/{module.removesuffix('.py')}.{target.cache_tag}.pyc"
        compiled = folder / f"{index}.pyc"
        jobs.append((str(files[name]), name, str(compiled)))
        entries[entry] = compiled
    # A fixed hash seed, so that nothing marshalled can depend on it.
    completed = subprocess.run(
        [python, "-s", "-S", "-c", COMPILE_SCRIPT],
        input=json.dumps(jobs),
        env={"PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = completed.stderr.strip().splitlines()[-3:]
        raise PackagingError(f"compiling the package's modules with {python} failed: {' / '.join(detail)}")
    return entries


def target_python(version: str) -> str | None:
    """An interpreter of Python ``version`` (e.g. ``3.12``): this one, pyenv's, or one on the PATH."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(
        pyenv_root.glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda path: [int(part) if part.isdigit() else 0 for part in re.split(r"[.-]", path.parts[-3])],
    )
    on_path = shutil.which(f"python{version}")
    for candidate in [*reversed(installed), *([Path(on_path)] if on_path else [])]:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:  # a pyenv shim of another version fails
            return str(candidate)
    return None


def _write_zip(files: Mapping[str, Path], output: Path) -> BuildResult:
    """Write entries in name order with fixed metadata, atomically."""
    directories = sorted({parent for name in files for parent in _parents(name)})
    names = sorted([*directories, *files])
    output.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own, so concurrent builds (tests, a synth) never write into each other's file.
    handle, partial_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(handle)
    partial = Path(partial_name)
    with zipfile.ZipFile(partial, "w") as archive:
        for name in names:
            if name in files:
                source = files[name]
                mode = EXECUTABLE_MODE if _is_native(name) else FILE_MODE
                info = _entry(name, 0o100000 | mode)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, source.read_bytes(), compresslevel=COMPRESS_LEVEL)
            else:
                info = _entry(name, 0o040000 | DIRECTORY_MODE)
                info.external_attr |= 0x10  # MS-DOS directory flag
                archive.writestr(info, b"")
    sha256, size = _sha256(partial), partial.stat().st_size
    partial.chmod(0o644)
    os.replace(partial, output)
    return BuildResult(output, sha256, size, tuple(names))


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, so the modes below are honoured
    info.external_attr = mode << 16
    return info


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: index + 1]) + "/" for index in range(len(parts))]


def _is_native(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.packaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64", help="the function's architecture")
    parser.add_argument("--output", type=Path, help="where to write the zip (default: build/lambda.zip)")
    parser.add_argument("--ca-bundle", type=Path, help=f"the database's CA bundle, packed as {CA_BUNDLE_ENTRY}")
    args = parser.parse_args(argv)
    try:
        result = build_package(args.output, Target(args.arch), ca_bundle=args.ca_bundle)
    except PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.path.relative_to(ROOT) if result.path.is_relative_to(ROOT) else result.path}")
    print(f"  {len(result.entries)} entries, {result.size:,} bytes, sha256 {result.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
