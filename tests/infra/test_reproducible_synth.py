"""Synthesizing twice, in separate processes, gives byte-identical output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from infra.packaging import BuildResult
from infra.stack import synthesize
from main import load_config


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_main_synthesizes_the_same_bytes_in_a_fresh_process_as_in_this_one(
    main_stack_file: Path, package: BuildResult, tmp_path: Path
) -> None:
    # main_stack_file: `python main.py` in a fresh process with another string-hash seed (tests/conftest.py).
    here = synthesize(load_config(os.environ), package=package, outdir=tmp_path)
    assert here.parent.name == main_stack_file.parent.name
    assert here.read_bytes() == main_stack_file.read_bytes()
    assert tree_digest(here.parent) == tree_digest(main_stack_file.parent), "assets (the Lambda zip, migrations) differ"
