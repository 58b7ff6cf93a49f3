#!/usr/bin/env bash
# Runs the service locally against the built-in CloudFront simulator and a local Postgres.
#
# Usage:
#   scripts/dev.sh        start Postgres if needed, build, print example requests, run the server
#   scripts/dev.sh stop   stop the local Postgres cluster (its data is kept)
#
# The cluster in /var/tmp/cfl-dev-pg keeps running after the server exits, so the next run
# starts quickly and keeps its data. Delete that directory after "stop" to start from scratch.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

pg_dir=/var/tmp/cfl-dev-pg
pg_port=55433
database=cloudfront_lifecycle
secret_file="$pg_dir/jwt-secret"

case "${1:-}" in
"") ;;
stop)
    pg_stop "$pg_dir"
    exit 0
    ;;
-h | --help)
    sed -n '2,9s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
*)
    echo "error: unknown argument '$1'; expected no argument or 'stop'" >&2
    exit 2
    ;;
esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cfl-target}

pg_start "$pg_dir" "$pg_port"

exists=$("$PG_BIN_DIR/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tA \
    -c "SELECT 1 FROM pg_database WHERE datname = '$database'")
if [[ $exists != 1 ]]; then
    echo "==> Creating database $database"
    "$PG_BIN_DIR/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$database"
fi

# The secret is created once so that tokens issued in earlier runs stay valid.
if [[ ! -s $secret_file ]]; then
    echo "==> Creating the JWT signing secret in $secret_file"
    (
        umask 077
        head -c 32 /dev/urandom | base64 | tr -d '\n' >"$secret_file.tmp"
    )
    mv "$secret_file.tmp" "$secret_file"
fi
chmod 600 "$secret_file"

export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$database"
AUTH_JWT_SECRET=$(cat "$secret_file")
export AUTH_JWT_SECRET
export CLOUDFRONT_BACKEND=simulator
export SIMULATOR_DEPLOY_SECONDS=${SIMULATOR_DEPLOY_SECONDS:-5}
export BIND_ADDR=${BIND_ADDR:-127.0.0.1:8080}
export SQLX_OFFLINE=true

echo "==> Building with cargo build (target dir $CARGO_TARGET_DIR)"
cargo build

binary="$CARGO_TARGET_DIR/debug/cloudfront-lifecycle"

# curl cannot connect to a wildcard address, so the example requests use loopback instead.
host_port=$BIND_ADDR
case "$host_port" in
0.0.0.0:*) host_port="127.0.0.1:${host_port#0.0.0.0:}" ;;
"[::]:"*) host_port="[::1]:${host_port#\[::\]:}" ;;
esac
base_url="http://$host_port"

if command -v jq >/dev/null; then
    pretty=" | jq ."
    id_hint="ID=\$(curl -sS -X POST $base_url/v1/distributions -H \"\$AUTH\" -H 'Content-Type: application/json' \\
    -d '{\"origin\":{\"domain_name\":\"example.com\"},\"comment\":\"demo\"}' | jq -r .id)"
else
    pretty=""
    id_hint="curl -sS -X POST $base_url/v1/distributions -H \"\$AUTH\" -H 'Content-Type: application/json' \\
    -d '{\"origin\":{\"domain_name\":\"example.com\"},\"comment\":\"demo\"}'
ID=PASTE_ID_HERE  # the \"id\" field of the response above"
fi

cat <<EOF

Server: $base_url (database $DATABASE_URL, simulated deploys take ${SIMULATOR_DEPLOY_SECONDS}s)
Try it from another terminal:

AUTH="Authorization: Bearer \$(AUTH_JWT_SECRET=\$(cat $secret_file) $binary token --sub alice)"

# Create a distribution: 202 with its id and status "creating".
$id_hint

# Read it again while status goes creating -> deploying -> deployed.
curl -sS $base_url/v1/distributions/\$ID -H "\$AUTH"$pretty

# Delete it: 202, then status goes disabling -> deleting -> deleted.
curl -sS -X DELETE $base_url/v1/distributions/\$ID -H "\$AUTH"$pretty
curl -sS $base_url/v1/distributions/\$ID -H "\$AUTH"$pretty

Stop Postgres with: scripts/dev.sh stop

EOF

echo "==> Starting $binary serve"
exec "$binary" serve
