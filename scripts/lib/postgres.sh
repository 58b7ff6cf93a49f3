#!/usr/bin/env bash
# Starts and stops throwaway Postgres 15 clusters for tests and local development.
# Source this file, then call pg_start DIR PORT and pg_stop DIR. The file leaves shell options
# such as set -e to the calling script.
#
# Layout of DIR: data/ is the data directory, socket/ contains the Unix socket and
# postgres.log is the server log. Callers may keep their own files in DIR as well.
#
# initdb and postgres refuse to run as root. When these functions run as root they
# run the server as the postgres system user, which owns DIR; otherwise the server
# runs as the calling user.

PG_BIN_DIR=${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}

# Runs a command as the user that owns the cluster files.
_pg_as_owner() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Installs Debian's postgresql-15 package when the binaries or the postgres user are missing.
pg_ensure_installed() {
    if [[ -x $PG_BIN_DIR/initdb && -x $PG_BIN_DIR/pg_ctl ]] && { ((EUID != 0)) || id -u postgres >/dev/null 2>&1; }; then
        return 0
    fi
    if ((EUID != 0)); then
        echo "error: Postgres 15 binaries not found in $PG_BIN_DIR; install postgresql-15 or set PG_BIN_DIR" >&2
        return 1
    fi
    echo "==> Installing postgresql-15 with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15
}

# Prints the postmaster PID of the cluster in DIR and succeeds if that postmaster is running.
# After a crash or a container restart the PID in postmaster.pid can belong to another
# process. It only counts as our postmaster if its program is postgres (server children
# rename themselves "postgres: ...") and its working directory is the data directory,
# which the postmaster changes into at startup.
pg_running_pid() {
    local dir=$1
    local data="$dir/data" pid program

    [[ -f $data/postmaster.pid ]] || return 1
    pid=$(head -n 1 "$data/postmaster.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    program=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1) || return 1
    [[ $program == postgres || $program == */postgres ]] || return 1
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$(readlink -f "$data")" ]] || return 1
    echo "$pid"
}

# Removes the lock files a killed postmaster leaves behind, which would stop the next start.
_pg_remove_stale_locks() {
    local dir=$1

    if [[ -f $dir/data/postmaster.pid ]]; then
        echo "==> Removing stale postmaster.pid in $dir/data"
        rm -f "$dir/data/postmaster.pid"
    fi
    rm -f "$dir"/socket/.s.PGSQL.*
}

# Writes the server settings. They are rewritten on every start so that a changed PORT applies.
_pg_write_config() {
    local dir=$1 port=$2
    local data="$dir/data" preload=""

    if [[ -f $("$PG_BIN_DIR/pg_config" --pkglibdir 2>/dev/null)/pg_stat_statements.so ]]; then
        preload="shared_preload_libraries = 'pg_stat_statements'"
    fi

    # fsync off trades crash safety for speed, which suits a cluster that is thrown away.
    cat >"$data/cfl-cluster.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/socket'
fsync = off
max_connections = 300
$preload
CONF

    # trust authentication is acceptable because the cluster is a throwaway one that accepts
    # connections only on loopback and on a socket in DIR. Never reuse this setup elsewhere.
    cat >"$data/pg_hba.conf" <<'HBA'
local all all trust
host  all all 127.0.0.1/32 trust
HBA

    chown "$(stat -c %u:%g "$data")" "$data/cfl-cluster.conf" "$data/pg_hba.conf"
}

# Creates the cluster in DIR/data unless it exists. initdb works in DIR/data.init and the
# result is renamed, so a killed initdb never leaves a half-made data directory behind.
_pg_init() {
    local dir=$1

    [[ -f $dir/data/PG_VERSION ]] && return 0

    echo "==> Creating Postgres cluster in $dir/data"
    rm -rf "$dir/data.init"
    _pg_as_owner "$PG_BIN_DIR/initdb" --pgdata="$dir/data.init" --username=postgres \
        --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        echo "error: initdb failed for $dir/data.init (log above)" >&2
        return 1
    }
    echo "include 'cfl-cluster.conf'" >>"$dir/data.init/postgresql.conf"
    mv "$dir/data.init" "$dir/data"
}

# Waits until the server in DIR accepts connections on 127.0.0.1:PORT, for at most 30 s.
_pg_wait_ready() {
    local dir=$1 port=$2 attempt

    for attempt in $(seq 1 60); do
        if "$PG_BIN_DIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            return 0
        fi
        sleep 0.5
    done
    echo "error: Postgres in $dir is not ready on 127.0.0.1:$port after 30 s; see $dir/postgres.log" >&2
    return 1
}

# Creates (if absent) and starts a throwaway cluster in DIR that listens on 127.0.0.1:PORT,
# then waits until it accepts connections. A cluster that is already running is reused.
pg_start() {
    local dir=$1 port=$2
    local owner

    pg_ensure_installed

    mkdir -p "$dir"
    dir=$(readlink -f "$dir")
    if ((EUID == 0)); then
        owner=postgres
        chown postgres:postgres "$dir"
    else
        owner=$(id -un)
    fi
    chmod 700 "$dir"
    if ! _pg_as_owner test -w "$dir"; then
        echo "error: user $owner cannot write to $dir; choose a directory it can reach, such as one under /var/tmp" >&2
        return 1
    fi

    if pg_running_pid "$dir" >/dev/null; then
        echo "==> Postgres in $dir is already running"
        _pg_wait_ready "$dir" "$port"
        return
    fi

    _pg_init "$dir"
    _pg_remove_stale_locks "$dir"
    _pg_as_owner mkdir -p "$dir/socket"
    _pg_write_config "$dir" "$port"

    echo "==> Starting Postgres on 127.0.0.1:$port (data in $dir/data, log in $dir/postgres.log)"
    # pg_ctl starts the postmaster in its own session, so Ctrl-C in this terminal does not reach it.
    if ! _pg_as_owner "$PG_BIN_DIR/pg_ctl" --pgdata="$dir/data" --log="$dir/postgres.log" \
        --wait --timeout=60 --silent start; then
        tail -n 20 "$dir/postgres.log" >&2 || true
        echo "error: Postgres failed to start in $dir (log tail above)" >&2
        return 1
    fi
    _pg_wait_ready "$dir" "$port"
}

# Stops the cluster in DIR with a fast shutdown. Succeeds when nothing is running.
pg_stop() {
    local dir=$1

    [[ -d $dir/data ]] || return 0
    dir=$(readlink -f "$dir")
    if pg_running_pid "$dir" >/dev/null; then
        echo "==> Stopping Postgres in $dir"
        _pg_as_owner "$PG_BIN_DIR/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --timeout=60 --silent stop
    else
        _pg_remove_stale_locks "$dir"
    fi
}
