# Shared by bench-failover.sh and bench-api.sh (sourced after cluster.sh, not run):
# the Patroni venv, the release build, a work directory removed on exit, and
# 3-member clusters of Keel or Patroni started from the same patroni.yml.
#
# The caller sets `systems` (keel and/or patroni) and `keep` (1 keeps the work
# directory), calls bench_init, then start_members / wait_healthy / stop_cluster per
# system. Ports: etcd ETCD_PORT, Keel KEEL_API_BASE.. / KEEL_PG_BASE.., Patroni
# PATRONI_API_BASE.. / PATRONI_PG_BASE.. (three each; bench_init sets the defaults
# bench-failover.sh uses unless the caller set them first).
# shellcheck shell=bash disable=SC2034,SC2154 # globals are this file's interface with its callers

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# bench_init WORK_PREFIX: venv, build, work directory, traps.
bench_init() {
    # setup.sh installs Patroni 4.1 into this venv (from /usr/bin/python3) when it is missing.
    if [ "$(id -u)" -eq 0 ]; then venv=/opt/keel/patroni-venv; else venv="$HOME/.cache/keel/patroni-venv"; fi
    venv="${KEEL_PATRONI_VENV:-$venv}"
    [ -x "$venv/bin/patroni" ] || { echo "Patroni is missing from $venv" >&2; exit 1; }
    py="$venv/bin/python"

    if [[ " ${systems[*]} " == *" keel "* ]]; then
        log "building keeld (release) and the etcd plugin"
        cargo build --release -p keeld
        cargo build --manifest-path plugins/Cargo.toml -p keel-plugin-etcd --release --target wasm32-wasip2
    fi

    work="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$work"
    results="$work/results.jsonl"
    : >"$results"
    ETCD_PORT="${ETCD_PORT:-23800}"
    KEEL_API_BASE="${KEEL_API_BASE:-8108}" KEEL_PG_BASE="${KEEL_PG_BASE:-5451}"
    PATRONI_API_BASE="${PATRONI_API_BASE:-8208}" PATRONI_PG_BASE="${PATRONI_PG_BASE:-5461}"
    NAMESPACE=/bench/
    names=(pg1 pg2 pg3)
    daemons=() apis=() pgs=() datas=() cfgs=() logs=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

measure() { timeout --foreground 900 "$py" -B scripts/bench/measure.py "$@"; }

# bench_start_etcd: the one etcd both systems use, on 127.0.0.1:ETCD_PORT.
bench_start_etcd() {
    log "etcd on 127.0.0.1:$ETCD_PORT (namespace $NAMESPACE)"
    mkdir -p "$work/etcd"
    [ "$(id -u)" -ne 0 ] || chown "$KEEL_USER" "$work/etcd"
    start_etcd keel-bench "$work/etcd/data" "$ETCD_PORT" "$work/etcd/etcd.log"
}

postmaster_pid() { # data dir -> the postmaster's pid, if it runs
    local pid
    pid="$(head -n1 "$1/postmaster.pid" 2>/dev/null)" || return 0
    # A stale postmaster.pid may name a reused pid: the postmaster's cwd is its data dir.
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$1" ] || return 0
    echo "$pid"
}

postmaster_pgid() { # data dir -> the postmaster's process group, if it runs
    local pid
    pid="$(postmaster_pid "$1")"
    [ -n "$pid" ] || return 0
    ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true
}

stop_cluster() {
    local groups=("${daemons[@]}") i g
    for i in "${!datas[@]}"; do
        g="$(postmaster_pgid "${datas[$i]}")"
        [ -z "$g" ] || groups+=("$g")
    done
    [ ${#groups[@]} -eq 0 ] || stop_groups 30 "${groups[@]}"
    daemons=()
}

bench_cleanup() {
    local rc=$?
    stop_cluster
    stop_spawned 10
    if [ "$keep" -eq 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
    return "$rc"
}

# die MESSAGE: the last daemon lines of every member, then exit.
die() {
    local i
    for i in "${!logs[@]}"; do
        echo "----- ${names[$i]}: ${logs[$i]} (last 30 lines)" >&2
        tail -n 30 "${logs[$i]}" >&2 || true
    done
    echo "FAILED: $*" >&2
    exit 1
}

start_daemon() { # index
    local i="$1"
    if [ "$system" = keel ]; then
        spawn "${logs[$i]}" env KEEL_LOG="${KEEL_LOG:-info}" NO_COLOR=1 "$here/target/release/keeld" "${cfgs[$i]}"
    else
        spawn "${logs[$i]}" "$venv/bin/patroni" "${cfgs[$i]}"
    fi
    daemons[i]=$SPAWNED
    # Killing the daemon means killing its group: wait until setsid has made it one.
    local _
    for _ in $(seq 50); do
        [ "$(ps -o pgid= -p "$SPAWNED" | tr -d ' ')" != "$SPAWNED" ] || return 0
        sleep 0.02
    done
    die "daemon $SPAWNED did not become a process group leader"
}

# start_members SYSTEM "TTL LOOP_WAIT RETRY_TIMEOUT": a fresh scope and data
# directories, 3 daemons started (not waited for); sets dsn (read-write, any member).
start_members() {
    system="$1" TIMINGS="$2" profile="${2// //}"
    SCOPE="$system-${profile//\//-}"
    local dir="$work/$SCOPE" base_api=$KEEL_API_BASE base_pg=$KEEL_PG_BASE i
    [ "$system" = keel ] || { base_api=$PATRONI_API_BASE; base_pg=$PATRONI_PG_BASE; }
    # Daemon logs apart: keeld's PostgreSQL writes its server log to <data_dir>.log.
    mkdir -p "$dir/logs"
    SOCKET_DIR="$dir" PLUGIN_DIR=""
    if [ "$system" = keel ]; then
        PLUGIN_DIR="$dir/plugins"
        mkdir -p "$PLUGIN_DIR"
        cp plugins/target/wasm32-wasip2/release/etcd.wasm "$PLUGIN_DIR/"
    fi
    daemons=() apis=() pgs=() datas=() cfgs=() logs=()
    for i in 0 1 2; do
        apis[i]=$((base_api + i)) pgs[i]=$((base_pg + i))
        datas[i]="$dir/${names[i]}" cfgs[i]="$dir/${names[i]}.yml" logs[i]="$dir/logs/${names[i]}.log"
        member_yaml "${names[$i]}" "${apis[$i]}" "${pgs[$i]}" "${datas[$i]}" >"${cfgs[$i]}"
    done
    [ "$(id -u)" -ne 0 ] || chown -R "$KEEL_USER" "$dir"
    log "$system, ttl/loop_wait/retry_timeout $profile: starting 3 members (scope $SCOPE)"
    for i in 0 1 2; do start_daemon "$i"; done
    dsn="postgresql://postgres:postgres@127.0.0.1:${pgs[0]},127.0.0.1:${pgs[1]},127.0.0.1:${pgs[2]}/postgres"
    dsn+="?target_session_attrs=read-write&connect_timeout=1&options=-c%20statement_timeout%3D2000"
}

# wait_healthy SECONDS: prints the leader's index once it holds the lock and the two
# others stream from it.
wait_healthy() {
    local out leader i
    out="$(IFS=,; measure healthy --api "${apis[*]}" --names "${names[*]}" --timeout "$1")" ||
        die "$system did not become healthy within $1 s"
    leader="${out#*\"leader\": \"}" leader="${leader%%\"*}"
    for i in "${!names[@]}"; do [ "${names[$i]}" != "$leader" ] || { echo "$i"; return; }; done
    die "unknown leader in $out"
}
