#!/usr/bin/env bash
# Sets everything up and runs a local 3-member Keel cluster on loopback:
# one etcd, three keeld (pg1..pg3) with the etcd plugin, all as the unprivileged
# user `keel`. State lives in .keel-local/ (kept between runs); Ctrl-C stops it all.
# The first member to win the initialize race bootstraps PostgreSQL; the others
# clone it and stream. Kill one (kill -9 its keeld and postgres) to watch a failover.
#
# --citus runs a Citus-shaped formation instead (state in .keel-local-citus/): a
# coordinator group (pg1, pg2) and two worker groups (pg3+pg4, pg5+pg6) with the
# Citus plugin. No package registry ships Citus, so every member preloads the stub
# library and the SQL emulation of Citus's metadata the tests use (tests/fixtures/):
# pg_dist_node is kept by the plugin exactly as on real Citus, but no query is
# distributed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
citus=false
case "${1:-}" in
    --citus) citus=true ;;
    "") ;;
    *) echo "usage: $0 [--citus]" >&2; exit 2 ;;
esac
bash scripts/setup.sh

. scripts/lib/cluster.sh
. scripts/lib/citus.sh
if $citus; then
    state="$here/.keel-local-citus" scope=keel-citus members="1 2 3 4 5 6"
else
    state="$here/.keel-local" scope=keel-local members="1 2 3"
fi
ETCD_PORT="${KEEL_ETCD_PORT:-23790}"
mkdir -p "$state/plugins" "$state/logs" "$state/data"

echo "== building keeld and the plugins"
cargo build -p keeld -p keelctl
plugins=(-p keel-plugin-etcd)
! $citus || plugins+=(-p keel-plugin-citus)
cargo build --manifest-path plugins/Cargo.toml "${plugins[@]}" --release --target wasm32-wasip2
cp plugins/target/wasm32-wasip2/release/etcd.wasm "$state/plugins/"
if $citus; then
    cp plugins/target/wasm32-wasip2/release/citus.wasm "$state/plugins/"
    citus_prepare "$state/citus"
fi
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
for f in etcd $(printf 'pg%s ' $members); do : >"$state/logs/$f.log"; done   # spawn appends: fresh logs each run
start_etcd "$scope" "$state/etcd" "$ETCD_PORT" "$state/logs/etcd.log"

SCOPE="$scope" NAMESPACE=/service/ SOCKET_DIR="$state/data" PLUGIN_DIR="$state/plugins" TIMINGS="30 10 10"
for n in $members; do
    member_yaml "pg$n" $((8008 + n - 1)) $((5441 + n - 1)) "$state/data/pg$n" >"$state/pg$n.yml"
    if $citus; then
        # Groups of two: pg1+pg2 coordinate (group 0), pg3+pg4 and pg5+pg6 are workers.
        citus_member "$state/pg$n.yml" $(((n - 1) / 2)) "$state/citus"
    fi
    spawn "$state/logs/pg$n.log" env KEEL_LOG="${KEEL_LOG:-info}" NO_COLOR=1 "$here/target/debug/keeld" "$state/pg$n.yml"
done

if $citus; then
cat <<MSG

Keel local Citus formation keel-citus is starting: coordinator pg1+pg2 (group 0), workers
pg3+pg4 (group 1) and pg5+pg6 (group 2); etcd at 127.0.0.1:$ETCD_PORT.
  coordinator:     postgresql://postgres:postgres@127.0.0.1:5441,127.0.0.1:5442/citus?target_session_attrs=read-write
  pg_dist_node:    psql 'postgresql://postgres:postgres@127.0.0.1:5441,127.0.0.1:5442/citus?target_session_attrs=read-write' -c 'TABLE pg_dist_node'
  watch it:        $here/target/debug/keelctl -c $state/pg1.yml list   (Group column; --group N for one group)
  worker switchover: $here/target/debug/keelctl -c $state/pg1.yml switchover --group 1 --force
  configs:         $state/pg{1..6}.yml   logs: $state/logs/
  stop:            Ctrl-C
MSG
tail -n +1 -F "$state"/logs/pg{1,2,3,4,5,6}.log &
tail_pid=$!
wait
exit 0
fi

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
