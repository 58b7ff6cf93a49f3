#!/usr/bin/env bash
# Drain rate: how many lifecycle steps per second one and two worker processes finish when
# ROWS rows are due at once, and the CPU time each step costs the workers.
#
# Each row waits in `deploying` for a CloudFront id the simulator does not have, so one step
# is a claim, one GetDistribution (returning 404 NoSuchDistribution) and a fenced write-back
# marking the row deleted outside the service. The simulator has no deploy time and no rate
# limit, and the workers' token buckets are set far above what they can use.
#
# Usage: bench/drain.sh [ROWS] [WORKER_COUNTS...]   (default 100000, then 1 and 2 workers)
#   BENCH_PG_PORT, BIN as in bench/idle.sh
set -euo pipefail

rows=${1:-100000}
shift || true
counts=("${@:-1 2}")
read -r -a counts <<<"${counts[*]}"
port=${BENCH_PG_PORT:-55450}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/cloudfront-lifecycle}
admin="postgres://postgres@127.0.0.1:$port/postgres"
database="bench_drain_$$"
url="postgres://postgres@127.0.0.1:$port/$database"
sim_port=18490
clock_ticks=$(getconf CLK_TCK)

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$admin" -c "drop database if exists $database with (force)"
}
trap cleanup EXIT

psql -q "$admin" -c "create database $database"
DATABASE_URL=$url "$bin" migrate >/dev/null 2>&1
RUST_LOG=warn "$bin" simulator --bind 127.0.0.1:$sim_port --deploy-seconds 0 >/dev/null 2>&1 &
sim_pid=$!
pids+=("$sim_pid")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "| workers | rows | seconds | steps/s | worker CPU ms/step | simulator CPU ms/step |"
echo "|---|---|---|---|---|---|"
for count in "${counts[@]}"; do
    psql -q "$url" -c "truncate distributions cascade"
    psql -q "$url" -c "
        insert into distributions (id, owner, spec, status, caller_reference, create_attempted,
                                   cloudfront_id, next_check_at, waiting_since)
        select gen_random_uuid(), 'benchmark',
               '{\"origin\": {\"domain_name\": \"origin.example.com\"}, \"comment\": \"benchmark\"}',
               'deploying', 'drain-' || n, true, 'EDRAIN' || n, now(), now()
        from generate_series(1, $rows) as n"
    psql -q "$url" -c "vacuum analyze distributions"

    workers=()
    sim_before=$(cpu_ticks "$sim_pid")
    begin=$(date +%s%N)
    for _ in $(seq "$count"); do
        DATABASE_URL=$url CLOUDFRONT_BACKEND=aws AWS_ENDPOINT_URL=http://127.0.0.1:$sim_port \
            AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
            CLOUDFRONT_MAX_ATTEMPTS=1 CLOUDFRONT_READ_RATE=1000000 CLOUDFRONT_READ_BURST=1000000 \
            CLOUDFRONT_MUTATING_RATE=1000000 CLOUDFRONT_MUTATING_BURST=1000000 \
            WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-64} DATABASE_MAX_CONNECTIONS=${DATABASE_MAX_CONNECTIONS:-40} \
            RUST_LOG=error "$bin" worker >/dev/null 2>&1 &
        workers+=("$!")
        pids+=("$!")
    done
    # Every step here ends its row deleted, out of the queue. Asking the due index whether
    # any row is still queued reads a few index pages. Counting rows by status would scan
    # the whole table five times a second and take CPU from the run it measures.
    until [[ $(psql -At "$url" -c "select not exists (select 1 from distributions where next_check_at is not null)") == t ]]; do
        sleep 0.2
    done
    end=$(date +%s%N)
    worker_ticks=0
    for pid in "${workers[@]}"; do worker_ticks=$((worker_ticks + $(cpu_ticks "$pid"))); done
    sim_ticks=$(($(cpu_ticks "$sim_pid") - sim_before))
    for pid in "${workers[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
    awk -v n="$count" -v rows="$rows" -v ns=$((end - begin)) -v wt="$worker_ticks" -v st="$sim_ticks" -v hz="$clock_ticks" 'BEGIN {
        s = ns / 1e9
        printf "| %d | %d | %.1f | %.0f | %.3f | %.3f |\n", n, rows, s, rows / s, wt / hz * 1000 / rows, st / hz * 1000 / rows
    }'
done
