#!/usr/bin/env bash
# Installs moto, the AWS service mock the integration tests run as a CloudFront endpoint.
# Source this file and call moto_ensure, which exports MOTO_SERVER_BIN. Each test starts its
# own server with "$MOTO_SERVER_BIN -H 127.0.0.1 -p PORT". The file leaves shell options such
# as set -e to the calling script.

MOTO_VERSION=5.2.5
MOTO_VENV=/var/tmp/cfl-moto-venv

# Prints the moto version installed in the venv, or nothing when moto is missing.
_moto_installed_version() {
    "$MOTO_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true
}

# Installs the python3 venv module with apt-get when it is missing, as on a fresh Debian 12.
_moto_ensure_python_venv() {
    if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
        return 0
    fi
    if ((EUID != 0)); then
        echo "error: python3 with the venv module is missing; install python3-venv and retry" >&2
        return 1
    fi
    echo "==> Installing python3-venv with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
}

# Creates or reuses the venv at MOTO_VENV with moto[server]==MOTO_VERSION and exports
# MOTO_SERVER_BIN. A venv with another moto version, or a half-finished install, is rebuilt.
moto_ensure() {
    local stamp="$MOTO_VENV/.cfl-moto-version" lock_fd

    # The lock keeps two concurrent runs from installing into the same venv at once.
    exec {lock_fd}>"$MOTO_VENV.lock"
    flock "$lock_fd"

    # The stamp is written only after pip succeeds, so an interrupted install is not reused.
    if [[ -x $MOTO_VENV/bin/moto_server && -f $stamp && $(_moto_installed_version) == "$MOTO_VERSION" ]]; then
        echo "==> Reusing moto $MOTO_VERSION in $MOTO_VENV"
    else
        echo "==> Installing moto[server]==$MOTO_VERSION into $MOTO_VENV (about a minute)"
        _moto_ensure_python_venv
        rm -rf "$MOTO_VENV"
        python3 -m venv "$MOTO_VENV"
        "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
        echo "$MOTO_VERSION" >"$stamp"
    fi

    flock --unlock "$lock_fd"
    exec {lock_fd}>&-

    export MOTO_SERVER_BIN="$MOTO_VENV/bin/moto_server"
}
