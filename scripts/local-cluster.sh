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

. scripts/lib/cluster.sh
state="$here/.keel-local"
ETCD_PORT="${KEEL_ETCD_PORT:-23790}"
mkdir -p "$state/plugins" "$state/logs" "$state/data"

echo "== building keeld and the plugins"
cargo build -p keeld -p keelctl
cargo build --manifest-path plugins/Cargo.toml -p keel-plugin-etcd --release --target wasm32-wasip2
cp plugins/target/wasm32-wasip2/release/etcd.wasm "$state/plugins/"
[ "$(id -u)" -ne 0 ] || chown -R "$KEEL_USER" "$state"

cleanup() {
    echo
    echo "== stopping"
    [ -z "${tail_pid:-}" ] || kill "$tail_pid" 2>/dev/null || true
    stop_spawned 60
    echo "stopped; state kept in $state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== etcd on 127.0.0.1:$ETCD_PORT"
for f in etcd pg1 pg2 pg3; do : >"$state/logs/$f.log"; done   # spawn appends: fresh logs each run
start_etcd keel-local "$state/etcd" "$ETCD_PORT" "$state/logs/etcd.log"

SCOPE=keel-local NAMESPACE=/service/ SOCKET_DIR="$state/data" PLUGIN_DIR="$state/plugins" TIMINGS="30 10 10"
for n in 1 2 3; do
    member_yaml "pg$n" $((8008 + n - 1)) $((5441 + n - 1)) "$state/data/pg$n" >"$state/pg$n.yml"
    spawn "$state/logs/pg$n.log" env KEEL_LOG="${KEEL_LOG:-info}" NO_COLOR=1 "$here/target/debug/keeld" "$state/pg$n.yml"
done

cat <<MSG

Keel local cluster keel-local is starting: members pg1..pg3, etcd at 127.0.0.1:$ETCD_PORT.
  connect:         postgresql://postgres:postgres@127.0.0.1:5441,127.0.0.1:5442,127.0.0.1:5443/postgres?target_session_attrs=read-write
  watch it:        $here/target/debug/keelctl -c $state/pg1.yml list   (or: topology, switchover, edit-config, ...)
  one member:      curl -s 127.0.0.1:8008/patroni
  the DCS keys:    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$ETCD_PORT get --prefix /service/keel-local/
  configs:         $state/pg{1,2,3}.yml   logs: $state/logs/
  stop:            Ctrl-C
MSG
tail -n +1 -F "$state"/logs/pg{1,2,3}.log &
tail_pid=$!
wait
