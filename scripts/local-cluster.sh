#!/usr/bin/env bash
# Sets everything up and runs a local 3-member Keel cluster on loopback:
# one etcd, three keeld (pg1..pg3) with the etcd plugin, all as the unprivileged
# user `keel`. State lives in .keel-local/ (kept between runs); Ctrl-C stops it all.
# The first member to win the initialize race bootstraps PostgreSQL; the others
# clone it and stream. Kill one (kill -9 its keeld and postgres) to watch a failover.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh

state="$here/.keel-local"
KEEL_USER="${KEEL_TEST_USER:-keel}"
ETCD_PORT="${KEEL_ETCD_PORT:-23790}"
mkdir -p "$state/plugins" "$state/logs" "$state/data"

echo "== building keeld and the plugins"
cargo build -p keeld
cargo build --manifest-path plugins/Cargo.toml -p keel-plugin-etcd --release --target wasm32-wasip2
cp plugins/target/wasm32-wasip2/release/etcd.wasm "$state/plugins/"

# Start a background process in its own process group (so stopping it stops
# everything it started), as the unprivileged user when we are root.
start() {
    local log="$1"; shift
    if [ "$(id -u)" -eq 0 ]; then set -- runuser -u "$KEEL_USER" -- "$@"; fi
    setsid "$@" >"$log" 2>&1 &
    pids+=($!)
}
[ "$(id -u)" -ne 0 ] || chown -R "$KEEL_USER" "$state"

pids=()
cleanup() {
    echo
    echo "== stopping"
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "stopped; state kept in $state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== etcd on 127.0.0.1:$ETCD_PORT"
start "$state/logs/etcd.log" /usr/bin/etcd --name keel-local --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "keel-local=http://127.0.0.1:$((ETCD_PORT + 1))"
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
    sleep 0.2
done

for n in 1 2 3; do
    cat >"$state/pg$n.yml" <<YAML
scope: keel-local
namespace: /service/
name: pg$n
restapi:
  listen: 127.0.0.1:$((8008 + n - 1))
  connect_address: 127.0.0.1:$((8008 + n - 1))
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
plugins:
  dir: $state/plugins
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    postgresql:
      use_pg_rewind: true
      parameters: {wal_log_hints: 'on'}
postgresql:
  listen: 127.0.0.1:$((5441 + n - 1))
  connect_address: 127.0.0.1:$((5441 + n - 1))
  data_dir: $state/data/pg$n
  bin_dir: /usr/lib/postgresql/15/bin
  parameters: {unix_socket_directories: $state/data}
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 md5
    - host replication replicator 127.0.0.1/32 md5
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: rep}
YAML
    start "$state/logs/pg$n.log" env KEEL_LOG="${KEEL_LOG:-info}" NO_COLOR=1 "$here/target/debug/keeld" "$state/pg$n.yml"
done

cat <<MSG

Keel local cluster keel-local is starting: members pg1..pg3, etcd at 127.0.0.1:$ETCD_PORT.
  connect:         postgresql://postgres:postgres@127.0.0.1:5441,127.0.0.1:5442,127.0.0.1:5443/postgres?target_session_attrs=read-write
  watch it:        curl -s 127.0.0.1:8008/patroni; /opt/keel/patroni-venv/bin/patronictl -c $state/pg1.yml list
  the DCS keys:    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT get --prefix /service/keel-local/
  configs:         $state/pg{1,2,3}.yml   logs: $state/logs/
  stop:            Ctrl-C
MSG
tail -n +1 -F "$state"/logs/pg{1,2,3}.log &
pids+=($!)
wait
