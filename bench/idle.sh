#!/usr/bin/env bash
# Idle cost and footprint of one replica (the release binary running `serve` with the
# embedded simulator and nothing due): SQL statements per minute from pg_stat_statements,
# resident memory, and the time from process start to the first 200 from /readyz on a migrated
# database.
#
# Usage: bench/idle.sh [WINDOW_SECONDS] [STARTS]
#   BENCH_PG_PORT   port of a throwaway cluster started with scripts/lib/postgres.sh pg_start
#                   (default 55450); pg_stat_statements must be in shared_preload_libraries
#   BIN             the binary (default target/release/cloudfront-lifecycle, or under
#                   CARGO_TARGET_DIR)
set -euo pipefail

window=${1:-600}
starts=${2:-10}
port=${BENCH_PG_PORT:-55450}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/cloudfront-lifecycle}
admin="postgres://postgres@127.0.0.1:$port/postgres"
database="bench_idle_$$"
url="postgres://postgres@127.0.0.1:$port/$database"
api_port=18480
secret=bench-secret-that-is-long-enough-for-hs256-0123456789

psql -q "$admin" -c "create database $database"
psql -q "$admin" -c "create extension if not exists pg_stat_statements"
trap 'kill "${pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; psql -q "$admin" -c "drop database if exists $database with (force)"' EXIT
DATABASE_URL=$url "$bin" migrate >/dev/null 2>&1

start_service() {
    DATABASE_URL=$url AUTH_JWT_SECRET=$secret BIND_ADDR=127.0.0.1:$api_port SKIP_MIGRATIONS=true \
        RUST_LOG=warn "$bin" serve >/dev/null 2>&1 &
    pid=$!
}

wait_ready() {
    until curl -fs -o /dev/null "http://127.0.0.1:$api_port/readyz"; do sleep 0.002; done
}

# Start-up time: from fork to the first 200 from /readyz, on a migrated database.
echo "start-up to /readyz (ms), $starts runs:"
for _ in $(seq "$starts"); do
    begin=$(date +%s%N)
    start_service
    wait_ready
    end=$(date +%s%N)
    echo "  $(((end - begin) / 1000000))"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done

# Idle statements: reset the counters once the replica has settled, then count for the window.
start_service
wait_ready
sleep 5
psql -q "$admin" -c "select pg_stat_statements_reset()" >/dev/null
sleep "$window"
psql -At "$admin" -c "
    select 'statements in window: ' || coalesce(sum(calls), 0)
         || ', per minute: ' || round(coalesce(sum(calls), 0) * 60.0 / $window, 1)
    from pg_stat_statements s join pg_database d on d.oid = s.dbid
    where d.datname = '$database'"
psql -At "$admin" -c "
    select '  ' || calls || '  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 90)
    from pg_stat_statements s join pg_database d on d.oid = s.dbid
    where d.datname = '$database' order by calls desc limit 8"
echo "resident memory: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status), peak $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
