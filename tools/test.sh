#!/usr/bin/env bash
# `make test`'s suites, side by side: all of tests/ on the default PostgreSQL, printed as it
# runs, and beside it the version-dependent integration modules on the versions given (the
# edges; tools/pg/matrix.sh, one version after the other), printed when the first is done.
# Each session has its own servers on ports the kernel gave or that are chosen again when
# taken (local/net.py, local/postgres.py), so the two never meet. Fails when either failed.
# PYTEST is the runner; with no version given, the first suite runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a pytest <<<"${PYTEST:-.venv/bin/pytest}"
edges_log=$(mktemp)
trap 'rm -f "$edges_log"' EXIT

edges=0
if (($#)); then
  PG_MARK=every_pg_version PYTEST="${PYTEST:-.venv/bin/pytest}" tools/pg/matrix.sh "$@" >"$edges_log" 2>&1 &
  edges=$!
fi
suite=0
"${pytest[@]}" || suite=$?
matrix=0
if ((edges)); then
  wait "$edges" || matrix=$?
  cat "$edges_log"
fi
((suite == 0)) || echo "the suite on the default PostgreSQL failed" >&2
((matrix == 0)) || echo "the version-dependent modules failed on an edge version (named above; the edges run: $*)" >&2
((suite == 0 && matrix == 0))
