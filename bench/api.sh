#!/usr/bin/env bash
# API against the database's limit: GET /v1/distributions/{id} on a table of ROWS rows at a
# fixed concurrency with wrk, then pgbench -S (select-only) at the same concurrency against
# the same Postgres, both for DURATION seconds.
#
# Usage: bench/api.sh [ROWS] [CONNECTIONS] [DURATION]   (default 100000 64 20)
#   BENCH_PG_PORT, BIN as in bench/idle.sh; needs wrk and pgbench on PATH
#   WRK_THREADS sets wrk's threads (default 2); DATABASE_MAX_CONNECTIONS and
#   DATABASE_READ_CONNECTIONS set the service's (default CONNECTIONS each)
set -euo pipefail

rows=${1:-100000}
connections=${2:-64}
duration=${3:-20}
wrk_threads=${WRK_THREADS:-2}
port=${BENCH_PG_PORT:-55450}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/cloudfront-lifecycle}
here=$(cd "$(dirname "$0")" && pwd)
admin="postgres://postgres@127.0.0.1:$port/postgres"
database="bench_api_$$"
url="postgres://postgres@127.0.0.1:$port/$database"
api_port=18481
secret=bench-secret-that-is-long-enough-for-hs256-0123456789
ids_file=$(mktemp)

cleanup() {
    kill "${pid:-0}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$ids_file"
    psql -q "$admin" -c "drop database if exists $database with (force)"
}
trap cleanup EXIT

psql -q "$admin" -c "create database $database"
DATABASE_URL=$url "$bin" migrate >/dev/null 2>&1
psql -q "$url" -c "
    insert into distributions (id, owner, spec, status, caller_reference, cloudfront_id,
                               arn, domain_name, cloudfront_status, cloudfront_enabled)
    select gen_random_uuid(), 'bench',
           '{\"origin\": {\"domain_name\": \"origin.example.com\"}, \"comment\": \"benchmark\"}',
           'deployed', 'api-' || n, 'EAPI' || n, 'arn:aws:cloudfront::123456789012:distribution/EAPI' || n,
           'd' || n || '.cloudfront.net', 'Deployed', true
    from generate_series(1, $rows) as n"
psql -q "$url" -c "vacuum analyze distributions"
psql -At "$url" -c "select id from distributions" >"$ids_file"

# The worker is left out (the API alone serves reads); the per-owner rate limit is off.
DATABASE_URL=$url AUTH_JWT_SECRET=$secret BIND_ADDR=127.0.0.1:$api_port RATE_LIMIT_PER_SECOND=0 \
    DATABASE_MAX_CONNECTIONS=${DATABASE_MAX_CONNECTIONS:-$connections} \
    DATABASE_READ_CONNECTIONS=${DATABASE_READ_CONNECTIONS:-$connections} RUST_LOG=error "$bin" api >/dev/null 2>&1 &
pid=$!
until curl -fs -o /dev/null "http://127.0.0.1:$api_port/readyz"; do sleep 0.05; done
token=$(AUTH_JWT_SECRET=$secret "$bin" token --sub bench)

echo "== service: wrk -t$wrk_threads -c$connections -d${duration}s GET /v1/distributions/{id}"
TOKEN=$token IDS_FILE=$ids_file wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency \
    -s "$here/get.lua" "http://127.0.0.1:$api_port" | grep -E "Requests/sec|p50_ms|Non-2xx|Socket errors" || true
kill "$pid"
wait "$pid" 2>/dev/null || true

echo "== pgbench -S -c$connections -j2 -T$duration (scale 10)"
pgbench -q -i -s 10 "$url" >/dev/null 2>&1
pgbench -S -n -c"$connections" -j2 -T"$duration" --log --log-prefix="$ids_file.pgb" "$url" 2>/dev/null |
    grep -E "^tps|latency average"
# Per-transaction log lines: client, transaction, latency in microseconds, ...
cat "$ids_file".pgb* | awk '{print $3}' | sort -n | awk '{a[NR] = $1} END {
    if (NR > 0) printf "pgbench latency p50_ms=%.2f p99_ms=%.2f\n", a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000
}'
rm -f "$ids_file".pgb*
