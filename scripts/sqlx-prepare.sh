#!/usr/bin/env bash
# Regenerates .sqlx/, the query data that lets the sqlx macros build with SQLX_OFFLINE=true,
# without installing sqlx-cli.
#
# Usage:
#   scripts/sqlx-prepare.sh          rewrite .sqlx/query-*.json from the current code
#   scripts/sqlx-prepare.sh --check  exit 1 if .sqlx/ differs from what the code needs
#
# It applies migrations/*.sql to a throwaway Postgres cluster and runs cargo check with the
# macros online. With SQLX_OFFLINE_DIR set, each query! macro that checks its query against
# the database also writes query-<hash>.json into that directory (sqlx-macros-core 0.8).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

mode=write
case "${1:-}" in
"") ;;
--check) mode=check ;;
*)
    echo "error: unknown argument '$1'; expected no argument or --check" >&2
    exit 2
    ;;
esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cfl-target}

pg_dir=/var/tmp/cfl-prepare-pg
pg_port=55434
database_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
work_dir=""

cleanup() {
    local status=$?
    pg_stop "$pg_dir" || echo "warning: failed to stop Postgres in $pg_dir" >&2
    if [[ -n $work_dir ]]; then
        rm -rf "$work_dir"
    fi
    exit "$status"
}
trap cleanup EXIT

# A killed run can leave its cluster running, so stop it before wiping its files.
pg_stop "$pg_dir"
echo "==> Wiping $pg_dir"
rm -rf "$pg_dir"
pg_start "$pg_dir" "$pg_port"

# Applies the migrations roughly as sqlx's migrator does. Each runs in its own transaction
# unless the file starts with "-- no-transaction", and down migrations are skipped. sqlx orders
# by the numeric version prefix, which matches the byte order of names while prefixes have
# equal width.
apply_migrations() {
    local file
    local -a files single_transaction

    mapfile -t files < <(find migrations -maxdepth 1 -name '*.sql' ! -name '*.down.sql' 2>/dev/null | LC_ALL=C sort)
    if ((${#files[@]} == 0)); then
        echo "==> No migrations in migrations/"
        return 0
    fi

    for file in "${files[@]}"; do
        single_transaction=(--single-transaction)
        if [[ $(head -c 17 "$file") == "-- no-transaction" ]]; then
            single_transaction=()
        fi
        echo "==> Applying $file"
        "$PG_BIN_DIR/psql" "$database_url" --quiet --no-psqlrc -v ON_ERROR_STOP=1 \
            "${single_transaction[@]}" --file="$file" >/dev/null
    done
}
apply_migrations

# The sqlx macros read SQLX_OFFLINE and SQLX_OFFLINE_DIR in a way cargo cannot track, so they
# run again only when the crate is rebuilt. Touching every target's root file forces that.
touch_targets() {
    local -a roots=(src/lib.rs src/main.rs)
    shopt -s nullglob
    roots+=(tests/*.rs benches/*.rs examples/*.rs)
    shopt -u nullglob
    local root
    for root in "${roots[@]}"; do
        if [[ -f $root ]]; then
            touch "$root"
        fi
    done
}

# The query files go to a temporary directory first, so a failed build leaves .sqlx/ untouched.
work_dir=$(mktemp -d)
out_dir="$work_dir/generated"
mkdir -p "$out_dir"

echo "==> Running cargo check --all-targets with the sqlx macros online"
touch_targets
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out_dir" DATABASE_URL="$database_url" \
    cargo check --all-targets
# Later offline builds must expand the macros again instead of reusing the online results.
touch_targets

count=$(find "$out_dir" -maxdepth 1 -name 'query-*.json' | wc -l)
if [[ $mode == write ]]; then
    mkdir -p .sqlx
    rm -f .sqlx/query-*.json
    if ((count > 0)); then
        cp "$out_dir"/query-*.json .sqlx/
    fi
    echo "==> Wrote $count query files to .sqlx/"
    exit 0
fi

# Compare only the query files, so other files kept in .sqlx/ do not count as a difference.
expected_dir="$work_dir/committed"
mkdir -p "$expected_dir"
if compgen -G ".sqlx/query-*.json" >/dev/null; then
    cp .sqlx/query-*.json "$expected_dir/"
fi
if diff -ru "$expected_dir" "$out_dir"; then
    echo "==> .sqlx/ is up to date ($count query files)"
else
    echo "error: .sqlx/ is out of date with the queries in the code; run scripts/sqlx-prepare.sh and commit .sqlx/" >&2
    exit 1
fi
