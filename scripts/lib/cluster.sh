# Shared by local-cluster.sh and the benchmarks (sourced, not run): start daemons
# as the unprivileged user, each in its own process group; run one etcd; write a
# member's patroni.yml, which keeld and Patroni both read.
# shellcheck shell=bash

KEEL_USER="${KEEL_TEST_USER:-keel}"
SPAWNED_PIDS=()

# spawn LOG CMD...: start CMD in the background in a new process group (so stopping
# the group stops whatever it starts), as $KEEL_USER when we are root; output is
# appended to LOG. setsid and setpriv exec, so SPAWNED is the daemon's own pid (and
# its process group id); it is also appended to SPAWNED_PIDS.
spawn() {
    local log="$1"; shift
    if [ "$(id -u)" -eq 0 ]; then
        local home
        home="$(getent passwd "$KEEL_USER" | cut -d: -f6)"
        set -- setpriv --reuid="$KEEL_USER" --regid="$KEEL_USER" --init-groups \
            env HOME="$home" USER="$KEEL_USER" LOGNAME="$KEEL_USER" "$@"
    fi
    setsid "$@" >>"$log" 2>&1 </dev/null &
    SPAWNED=$!
    disown "$SPAWNED" # no "Killed" job reports; stop_groups and group_alive track it
    SPAWNED_PIDS+=("$SPAWNED")
}

# group_alive PGID: whether a live (non-zombie) process is left in the group.
group_alive() {
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# stop_groups SECONDS PGID...: SIGTERM each group, wait up to SECONDS for all of them
# to exit, then SIGKILL what is left.
stop_groups() {
    local timeout="$1"; shift
    local g deadline=$((SECONDS + timeout)) left
    for g in "$@"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    while :; do
        left=()
        for g in "$@"; do group_alive "$g" && left+=("$g"); done
        [ ${#left[@]} -gt 0 ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.2
    done
    for g in "${left[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}

# stop_spawned SECONDS: stop every group spawn started, etcd last (so that daemons
# stopping cleanly can still release their leader key).
stop_spawned() {
    local timeout="$1" g rest=()
    for g in "${SPAWNED_PIDS[@]}"; do [ "$g" = "${ETCD_PID:-}" ] || rest+=("$g"); done
    [ ${#rest[@]} -eq 0 ] || stop_groups "$timeout" "${rest[@]}"
    [ -z "${ETCD_PID:-}" ] || stop_groups 10 "$ETCD_PID"
}

# start_etcd NAME DATA_DIR PORT LOG: one etcd member on loopback (client PORT, peer
# PORT+1), waited for up to 10 s; its pid is ETCD_PID.
start_etcd() {
    local name="$1" data="$2" port="$3" log="$4"
    spawn "$log" /usr/bin/etcd --name "$name" --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "$name=http://127.0.0.1:$((port + 1))"
    ETCD_PID=$SPAWNED
    for _ in $(seq 50); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "etcd did not come up on 127.0.0.1:$port; see $log" >&2
    return 1
}

# member_yaml NAME API_PORT PG_PORT DATA_DIR: a member's patroni.yml on stdout.
# Reads SCOPE, NAMESPACE, ETCD_PORT, SOCKET_DIR, TIMINGS ("ttl loop_wait retry_timeout")
# and PLUGIN_DIR (keeld's plugin directory; empty leaves the section out, for Patroni).
member_yaml() {
    local name="$1" api="$2" pg="$3" data="$4"
    local ttl loop_wait retry_timeout
    read -r ttl loop_wait retry_timeout <<<"$TIMINGS"
    cat <<YAML
scope: $SCOPE
namespace: $NAMESPACE
name: $name
restapi:
  listen: 127.0.0.1:$api
  connect_address: 127.0.0.1:$api
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
# A demo cluster whose members get killed: never arm a real watchdog device.
watchdog:
  mode: off
YAML
    [ -z "${PLUGIN_DIR:-}" ] || printf 'plugins:\n  dir: %s\n' "$PLUGIN_DIR"
    cat <<YAML
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $loop_wait
    retry_timeout: $retry_timeout
    postgresql:
      use_pg_rewind: true
      parameters: {wal_log_hints: 'on', wal_keep_size: 64MB}
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $data
  bin_dir: /usr/lib/postgresql/15/bin
  parameters: {unix_socket_directories: $SOCKET_DIR}
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 md5
    - host replication replicator 127.0.0.1/32 md5
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: rep}
YAML
}
