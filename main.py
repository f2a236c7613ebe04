"""The example app: read the configuration once, build the Lambda package, synthesize.

``python main.py`` (or ``cdktf synth``) writes ``cdktf.out/``. Settings come from the
``dbmigrate`` object in ``cdktf.json``'s ``context`` and from ``DBMIGRATE_*``
environment variables (see infra/config.py); ``CDKTF_OUTDIR`` moves the output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from infra.config import ConfigError, StackConfig
from infra.packaging import PackagingError, Target, build_package

ROOT = Path(__file__).resolve().parent
CONTEXT_KEY = "dbmigrate"


def load_config(environ: Mapping[str, str]) -> StackConfig:
    """The stack's settings: defaults, then cdktf.json's context, then the environment."""
    settings = json.loads((ROOT / "cdktf.json").read_text(encoding="utf-8"))
    return StackConfig.from_sources(settings.get("context", {}).get(CONTEXT_KEY, {}), environ)


def main() -> int:
    try:
        config = load_config(os.environ)
        package = build_package(target=Target(config.architecture), ca_bundle=config.db_ca_bundle)
    except (ConfigError, PackagingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Loads cdktf and the AWS provider (tens of seconds): only once the inputs are known to be good.
    from infra.stack import synthesize  # noqa: PLC0415

    outdir = Path(os.environ.get("CDKTF_OUTDIR") or ROOT / "cdktf.out")
    stack_file = synthesize(config, package=package, outdir=outdir)
    print(f"synthesized {stack_file} (package sha256 {package.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
