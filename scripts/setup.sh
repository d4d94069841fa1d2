#!/usr/bin/env bash
# Installs what Keel needs on a fresh Debian 12 machine, idempotently:
# the wasm target, protoc (etcd-client's build), etcd, PostgreSQL 15, and the
# unprivileged user `keel` that PostgreSQL and the daemons run as (initdb refuses root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEL_USER="${KEEL_TEST_USER:-keel}"

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
# The TLS etcd tests make their throw-away CA with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
# examples/haproxy.cfg is tested end to end against a running cluster.
[ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# scripts/bench-api.sh loads the REST API with wrk.
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${need_apt[*]}; run this script as root (or install them)" >&2
        exit 1
    fi
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "rustup target add wasm32-wasip2"
    rustup target add wasm32-wasip2
fi

if [ "$(id -u)" -eq 0 ]; then
    if ! id "$KEEL_USER" >/dev/null 2>&1; then
        log "useradd $KEEL_USER (PostgreSQL and keeld run unprivileged)"
        useradd --create-home --shell /bin/bash "$KEEL_USER"
    fi
    # The unprivileged user must reach the checkout (test binaries, built plugins):
    # make every ancestor directory traversable. Nothing is made readable.
    dir="$here"
    while [ "$dir" != "/" ]; do
        [ -n "$(find "$dir" -maxdepth 0 -perm -o+x)" ] || chmod o+x "$dir"
        dir="$(dirname "$dir")"
    done
fi
# Patroni 4.1 (PyPI) is the reference Keel is tested against (patronictl as a client
# of Keel's DCS layout). Debian's python, not pyenv's: the unprivileged user must run it.
if [ "$(id -u)" -eq 0 ]; then default_venv=/opt/keel/patroni-venv; else default_venv="$HOME/.cache/keel/patroni-venv"; fi
PATRONI_VENV="${KEEL_PATRONI_VENV:-$default_venv}"
if [ ! -x "$PATRONI_VENV/bin/patronictl" ]; then
    log "Patroni 4.1 into $PATRONI_VENV"
    mkdir -p "$(dirname "$PATRONI_VENV")"
    /usr/bin/python3 -m venv "$PATRONI_VENV"
    "$PATRONI_VENV/bin/pip" install --quiet --disable-pip-version-check 'patroni[etcd3]==4.1.*' psycopg2-binary
fi
log "setup done"
