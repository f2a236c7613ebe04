"""Synthesizing twice, in separate processes, gives byte-identical output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, Synth


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_main_synthesizes_the_same_bytes_again_in_a_fresh_process(
    synth: Synth, migrations_folder: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DBMIGRATE_MIGRATIONS_DIR": str(migrations_folder),
        "CDKTF_OUTDIR": str(tmp_path),
        "PYTHONHASHSEED": "12345",  # another string-hash order than the session's
    }
    completed = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    again = tmp_path / "stacks" / synth.stack_dir.name
    assert (again / "cdk.tf.json").read_bytes() == (synth.stack_dir / "cdk.tf.json").read_bytes()
    assert tree_digest(again) == tree_digest(synth.stack_dir), "assets (the Lambda zip, migration files) differ"
