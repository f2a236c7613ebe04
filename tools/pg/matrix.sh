#!/usr/bin/env bash
# tests/integration (the corpus included) on each PostgreSQL major version given, PG_JOBS
# (default 1) at a time. Side by side, twice one session's moto server never answered (at
# set-up of tests/integration/test_s3source.py); the likely cause, a port chosen before the
# server bound it and taken meanwhile by the other session, is gone (local/aws.py binds port
# 0), but two versions side by side saved little on 2 cores, so they still run one after
# the other unless asked. `make test` runs this beside the main suite (tools/test.sh).
# PG_MARK, when set, is a pytest -m expression that picks the modules to run (`make test`
# passes every_pg_version: the modules whose outcome depends on the server's
# version, see pyproject.toml's markers); unset, all of tests/integration. Prints each
# version's output in the order given; fails when one version failed. `make test-matrix`
# and `make test` call it; PYTEST is the runner.
set -euo pipefail
jobs=${PG_JOBS:-1}
select=()
[ -z "${PG_MARK:-}" ] || select=(-m "$PG_MARK")
read -r -a pytest <<<"${PYTEST:-.venv/bin/pytest}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run() {
  local version=$1 start=$SECONDS status=0
  PG_VERSION=$version "${pytest[@]}" tests/integration "${select[@]}" -q -p no:cacheprovider >"$logs/$version.log" 2>&1 || status=$?
  echo "$status $((SECONDS - start))" >"$logs/$version.result"
}

pending=("$@")
while ((${#pending[@]})); do
  for version in "${pending[@]:0:jobs}"; do run "$version" & done
  pending=("${pending[@]:jobs}")
  wait
done

failed=()
for version in "$@"; do
  read -r status seconds <"$logs/$version.result"
  echo "== PostgreSQL $version: tests/integration${PG_MARK:+ -m $PG_MARK}, $seconds s"
  cat "$logs/$version.log"
  [ "$status" = 0 ] || failed+=("$version")
done
if ((${#failed[@]})); then
  echo "test-matrix failed on PostgreSQL ${failed[*]}" >&2
  exit 1
fi
