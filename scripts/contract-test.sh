#!/usr/bin/env bash
# Runs the contract tests against a live service built from this tree. Schemathesis fuzzes
# every operation in the OpenAPI document and follows its links from create to the item
# operations. Then the generated TypeScript client creates, reads, updates and deletes a
# distribution.
# Usage: scripts/contract-test.sh. With TEST_DATABASE_URL set (scripts/test.sh sets it) the
# service gets a fresh database on that server; otherwise a throwaway cluster is started.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=lib/schemathesis.sh
source scripts/lib/schemathesis.sh

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cfl-target}
# Schemathesis is seeded so that a failure found in CI reproduces locally.
SCHEMATHESIS_SEED=${SCHEMATHESIS_SEED:-20250601}
# Test cases per operation and phase; 200 take well under two minutes with the four operations
# of the document at the time of writing.
SCHEMATHESIS_MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-200}

for tool in curl npm psql python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is missing; the contract tests need curl, Node 20 with npm, psql and python3" >&2
        exit 1
    fi
done

work_dir=$(mktemp -d /tmp/cfl-contract.XXXXXX)
own_cluster_dir=""
service_pid=""
database_name="contract_$(date +%s)_$$"

cleanup() {
    local status=$?
    if [[ -n $service_pid ]]; then
        kill "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    if ((status != 0)) && [[ -f $work_dir/service.log ]]; then
        echo "==> Last lines of the service log:" >&2
        tail -n 40 "$work_dir/service.log" >&2 || true
    fi
    if [[ -n ${admin_url:-} ]]; then
        psql -q "$admin_url" -c "drop database if exists $database_name" >/dev/null 2>&1 || true
    fi
    if [[ -n $own_cluster_dir ]]; then
        pg_stop "$own_cluster_dir" || echo "warning: failed to stop Postgres in $own_cluster_dir" >&2
    fi
    rm -rf "$work_dir"
    exit "$status"
}
trap cleanup EXIT

if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    admin_url=$TEST_DATABASE_URL
else
    own_cluster_dir=/var/tmp/cfl-contract-pg
    pg_stop "$own_cluster_dir"
    rm -rf "$own_cluster_dir"
    pg_start "$own_cluster_dir" 55434
    admin_url=postgres://postgres@127.0.0.1:55434/postgres
fi
psql -q "$admin_url" -c "create database $database_name"
database_url="${admin_url%/*}/$database_name"

st_ensure

echo "==> Building the service"
cargo build --quiet --bin cloudfront-lifecycle
binary=$CARGO_TARGET_DIR/debug/cloudfront-lifecycle

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url="http://127.0.0.1:$port"
secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

echo "==> Starting the service on $base_url with the embedded simulator"
# The rate limit is raised so that fuzzing measures the API, not the limiter; the limiter
# has its own tests in tests/service/contract.rs.
DATABASE_URL=$database_url AUTH_JWT_SECRET=$secret BIND_ADDR=127.0.0.1:$port \
    CLOUDFRONT_BACKEND=simulator SIMULATOR_DEPLOY_SECONDS=1 \
    RATE_LIMIT_PER_SECOND=10000 RATE_LIMIT_BURST=10000 RUST_LOG=warn \
    "$binary" serve >"$work_dir/service.log" 2>&1 &
service_pid=$!

deadline=$((SECONDS + 60))
until curl -fsS "$base_url/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$service_pid" 2>/dev/null; then
        echo "error: the service exited during start-up" >&2
        exit 1
    fi
    if ((SECONDS > deadline)); then
        echo "error: the service did not respond on $base_url/healthz within 60 s; see the log below" >&2
        exit 1
    fi
    sleep 0.2
done

token=$(AUTH_JWT_SECRET=$secret "$binary" token --sub contract-tests --ttl 3600)

echo "==> Schemathesis $SCHEMATHESIS_VERSION (seed $SCHEMATHESIS_SEED, up to $SCHEMATHESIS_MAX_EXAMPLES cases per operation)"
# Schemathesis keeps a cache in its working directory, so it runs in the scratch directory.
(cd "$work_dir" && "$SCHEMATHESIS_BIN" run "$base_url/openapi.json" \
    --url "$base_url" \
    --header "Authorization: Bearer $token" \
    --phases examples,coverage,fuzzing,stateful \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
    --seed "$SCHEMATHESIS_SEED" \
    --max-examples "$SCHEMATHESIS_MAX_EXAMPLES" \
    --generation-database none \
    --request-timeout 20 \
    --workers 1 \
    --no-color)

echo "==> TypeScript client"
cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
CFL_BASE_URL=$base_url CFL_TOKEN=$token npm test
