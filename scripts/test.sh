#!/usr/bin/env bash
# Runs the whole test suite against a fresh throwaway Postgres cluster and a local moto install.
# Usage: scripts/test.sh [cargo test arguments...], for example scripts/test.sh -- --nocapture
# NOTE: --all-targets covers the library, binary and integration tests but not doctests.
# Afterwards scripts/contract-test.sh runs Schemathesis and the TypeScript client test
# against a live service; SKIP_CONTRACT_TESTS=1 skips them.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=lib/moto.sh
source scripts/lib/moto.sh

# The target directory lives outside the clone so that fresh clones on one machine share it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cfl-target}

pg_dir=/var/tmp/cfl-test-pg
pg_port=55432

# A run that was killed can leave its cluster running, so stop it before wiping its files.
pg_stop "$pg_dir"
echo "==> Wiping $pg_dir"
rm -rf "$pg_dir"

stop_cluster() {
    local status=$?
    pg_stop "$pg_dir" || echo "warning: failed to stop Postgres in $pg_dir" >&2
    exit "$status"
}
# Bash also runs the EXIT trap when SIGINT or SIGTERM ends the script.
trap stop_cluster EXIT

pg_start "$pg_dir" "$pg_port"
moto_ensure

# Tests create their own databases through this URL.
export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export SQLX_OFFLINE=true
export MOTO_SERVER_BIN

echo "==> Running cargo test --all-targets${*:+ $*} (target dir $CARGO_TARGET_DIR)"
cargo test --all-targets "$@"

# The contract tests fuzz the live service and drive it with the generated TypeScript client.
if [[ ${SKIP_CONTRACT_TESTS:-} == 1 ]]; then
    echo "==> Skipping the contract tests (SKIP_CONTRACT_TESTS=1)"
else
    scripts/contract-test.sh
fi
