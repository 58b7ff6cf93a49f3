#!/usr/bin/env bash
# Installs Schemathesis, the OpenAPI fuzzer that scripts/contract-test.sh runs against the
# live service. Source this file and call st_ensure, which exports SCHEMATHESIS_BIN. The file
# leaves shell options such as set -e to the calling script.

SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/var/tmp/cfl-schemathesis-venv

_st_installed_version() {
    "$SCHEMATHESIS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}

# Creates or reuses the venv with schemathesis==SCHEMATHESIS_VERSION. A venv with another
# version, or one whose install was interrupted (no stamp file), is rebuilt.
st_ensure() {
    local stamp="$SCHEMATHESIS_VENV/.cfl-version" lock_fd

    # Two concurrent runs must not install into the same venv at once.
    exec {lock_fd}>"$SCHEMATHESIS_VENV.lock"
    flock "$lock_fd"

    if [[ -x $SCHEMATHESIS_VENV/bin/st && -f $stamp && $(_st_installed_version) == "$SCHEMATHESIS_VERSION" ]]; then
        echo "==> Reusing Schemathesis $SCHEMATHESIS_VERSION in $SCHEMATHESIS_VENV"
    else
        echo "==> Installing schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
        rm -rf "$SCHEMATHESIS_VENV"
        python3 -m venv "$SCHEMATHESIS_VENV"
        "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
        echo "$SCHEMATHESIS_VERSION" >"$stamp"
    fi

    flock --unlock "$lock_fd"
    exec {lock_fd}>&-

    export SCHEMATHESIS_BIN="$SCHEMATHESIS_VENV/bin/st"
}
