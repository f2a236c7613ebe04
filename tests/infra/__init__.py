"""Infra tests. jsii starts Node for cdktf on the first import of infra's constructs: point it
at the project's Node 22 (package.json, `make infra-tools`) rather than an older system one."""

from __future__ import annotations

import os
from pathlib import Path

_NODE = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "node"
if _NODE.exists():
    os.environ.setdefault("JSII_NODE", str(_NODE))
