"""The migration Lambda run locally from its package, as the Lambda runtime would run it.

``PackageImage`` unpacks the built zip into a folder; ``LocalFunction`` starts ``lambda_runtime.py``
under the runtime's Python (pyenv's python3.12 when present) with only that folder and
boto3 on its path: what runs is exactly what the zip holds. Invocations return the
handler's result or raise ``FunctionError`` with the handler's error, as a failed
``aws_lambda_invocation`` would.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

__all__ = ["FunctionError", "LocalFunction", "PackageImage", "runtime_python"]

RUNTIME_SCRIPT = Path(__file__).resolve().with_name("lambda_runtime.py")
PASSED_THROUGH = ("PATH", "HOME", "LANG", "TZ")


class FunctionError(RuntimeError):
    """The function raised: ``error_type`` and ``message`` are the handler's."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def runtime_python(version: str = "3.12") -> tuple[str, bool]:
    """The interpreter to run the package with, and whether it is the runtime's version.

    pyenv's ``python<version>`` when installed; otherwise this interpreter (the package
    must then be built for it, which the caller decides).
    """
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = ""
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}")) if root else []
    if found:
        return found[-1], True
    return sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}" == version


def link_boto3(target: Path) -> Path:
    """boto3 and its dependencies (pure Python) from this environment, linked: the runtime's share."""
    target.mkdir(parents=True, exist_ok=True)
    todo, seen = ["boto3"], set()
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        todo += [re.split(r"[ ;<>=!~\[(]", req)[0] for req in dist.requires or [] if "extra ==" not in req]
        tops = {file.parts[0] for file in dist.files or [] if file.parts[0] not in ("..", "bin")}
        for top in sorted(tops):
            if top.endswith(".dist-info") or top == "__pycache__":
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)
    return target


class PackageImage:
    """A package unpacked, with the runtime's boto3 beside it: what instances start from.

    Preparing copies thousands of files; one image serves any number of instances.
    """

    def __init__(self, package: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dbmigrate-function-"))
        self.task = self.folder / "task"
        with zipfile.ZipFile(package) as archive:
            archive.extractall(self.task)
        self.runtime = link_boto3(self.folder / "runtime")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class LocalFunction:
    """One warm instance of the function, started from a prepared package image."""

    def __init__(  # noqa: PLR0913  mirrors Lambda's function configuration (Handler, Environment, Timeout, FunctionName, MemorySize)
        self,
        image: PackageImage,
        *,
        handler: str,
        environment: Mapping[str, str],
        timeout_s: float,
        name: str,
        memory_mb: int = 512,
        python: str | None = None,
        logs: IO[str] | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        read_end, write_end = os.pipe()
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env.update(environment)
        env["PYTHONPATH"] = f"{image.task}{os.pathsep}{image.runtime}"
        self._process = subprocess.Popen(
            [python or runtime_python()[0], "-S", str(RUNTIME_SCRIPT), handler, str(write_end)],
            cwd=image.task,
            env=env,
            stdin=subprocess.PIPE,
            stdout=logs or sys.stderr,
            stderr=logs or sys.stderr,
            text=True,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        self._replies = os.fdopen(read_end)
        ready = self._reply()
        if not ready.get("ready"):
            self.close()
            raise FunctionError(ready.get("errorType", "Runtime.ImportModuleError"), ready.get("errorMessage", ""))

    def invoke(self, event: Any) -> Any:
        """Invoke with an event (any JSON value); the result, or FunctionError."""
        return self.invoke_raw(json.dumps(event))

    def invoke_raw(self, payload: str) -> Any:
        """Invoke with a raw payload, as the Invoke API takes it (it must be JSON)."""
        assert self._process.stdin is not None
        request = {
            "payload": payload,
            "function_name": self.name,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
        }
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = self._reply()
        if not answer.get("ok"):
            raise FunctionError(answer.get("errorType", "Runtime.Unknown"), answer.get("errorMessage", ""))
        return answer["result"]

    def close(self) -> None:
        """Stop the runtime process."""
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._replies.close()

    def __enter__(self) -> LocalFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reply(self) -> dict[str, Any]:
        line = self._replies.readline()
        if not line:
            code = self._process.wait()
            raise FunctionError("Runtime.ExitError", f"the function's process exited with code {code}")
        answer: dict[str, Any] = json.loads(line)
        return answer
