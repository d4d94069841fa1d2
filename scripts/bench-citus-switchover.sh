#!/usr/bin/env bash
# The pause window of a Citus worker switchover under Keel: a coordinator (group 0) and a
# worker group of two (group 1) on loopback, one etcd, Patroni's default timings. A
# client (pgbench, one connection, no think time) keeps writing through the coordinator
# to the worker group while an operator's switchover moves the group's primary; the
# longest write is the pause window (the coordinator holds the group's row in an open
# transaction from the worker's before_demote to its after_promote, so writes wait
# instead of failing). Patroni's documentation shows about 2.85 s for the same moment on
# real Citus.
#
# No registry ships Citus, so the members run the stub library and the SQL emulation of
# Citus's metadata the tests use (scripts/lib/citus.sh): a "write" is
# keel_emulation.coordinator_write(1), which takes the group's lock as a write to one of
# its shards does and returns where the write would go. The window measured is Keel's
# and the handler's part; real Citus adds its own query time.
#
# Usage: scripts/bench-citus-switchover.sh [--runs N] [--keep]
#   --runs N   switchovers, back and forth (default 3)
#   --keep     keep the work directory (configs, logs, pgbench logs)
# Ports: etcd 23840 (KEEL_BENCH_CITUS_ETCD_PORT), REST 8138-8140, PostgreSQL 5491-5493.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

runs=3 keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "usage: $0 [--runs N] [--keep]" >&2; exit 2 ;;
    esac
done

bash scripts/setup.sh >/dev/null
. scripts/lib/cluster.sh
. scripts/lib/citus.sh
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

log "building keeld (release) and the etcd and citus plugins"
cargo build --release -p keeld -p keelctl
cargo build --manifest-path plugins/Cargo.toml -p keel-plugin-etcd -p keel-plugin-citus --release --target wasm32-wasip2

work="$(mktemp -d /tmp/keel-bench-citus.XXXXXX)"
chmod 755 "$work"
cleanup() {
    stop_spawned 60
    if [ "$keep" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/plugins" "$work/data" "$work/logs"
cp plugins/target/wasm32-wasip2/release/{etcd,citus}.wasm "$work/plugins/"
citus_prepare "$work/citus"
[ "$(id -u)" -ne 0 ] || chown -R "$KEEL_USER" "$work"

ETCD_PORT="${KEEL_BENCH_CITUS_ETCD_PORT:-23840}"
start_etcd keel-bench-citus "$work/etcd" "$ETCD_PORT" "$work/logs/etcd.log"
SCOPE=bench-citus NAMESPACE=/bench/ SOCKET_DIR="$work/data" PLUGIN_DIR="$work/plugins" TIMINGS="30 10 10"
groups=(0 1 1)
for i in 0 1 2; do
    n=$((i + 1))
    member_yaml "pg$n" $((8138 + i)) $((5491 + i)) "$work/data/pg$n" >"$work/pg$n.yml"
    citus_member "$work/pg$n.yml" "${groups[$i]}" "$work/citus"
    spawn "$work/logs/pg$n.log" env KEEL_LOG=info NO_COLOR=1 "$here/target/release/keeld" "$work/pg$n.yml"
done

export PGPASSWORD=postgres
coordinator=(-h 127.0.0.1 -p 5491 -U postgres -X -q -At citus)
sql() { /usr/lib/postgresql/15/bin/psql "${coordinator[@]}" -c "$1" 2>/dev/null; }
role() { curl -fsS "http://127.0.0.1:$((8138 + $1))/patroni" 2>/dev/null | sed -nE 's/.*"role":"([a-z_]+)".*/\1/p'; }
worker_leader() { # the worker member (1 or 2) that runs the group's primary
    local i
    for i in 1 2; do [ "$(role "$i")" = primary ] && { echo "$i"; return; }; done
}
wait_until() { # SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"; shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "timed out waiting for $what; logs in $work/logs" >&2; keep=1; exit 1; }
        sleep 0.5
    done
}
formation_ready() {
    [ -n "$(worker_leader)" ] && [ "$(sql "SELECT count(*) FROM pg_dist_node WHERE groupid = 1")" = 2 ]
}
log "starting the formation: pg1 coordinates, pg2+pg3 form worker group 1"
wait_until 180 "the formation" formation_ready

echo 'SELECT nodeport FROM keel_emulation.coordinator_write(1);' >"$work/write.sql"
printf '| run | from → to | switchover | pause window (longest write) | writes > 100 ms | writes failed |\n|---|---|---|---|---|---|\n'
windows=()
for run in $(seq "$runs"); do
    from="$(worker_leader)"
    to=$((3 - from))
    # The writer runs through the whole switchover; a write that fails aborts pgbench.
    /usr/lib/postgresql/15/bin/pgbench -n -c 1 -T 30 -f "$work/write.sql" --log \
        --log-prefix="$work/run$run" -h 127.0.0.1 -p 5491 -U postgres citus \
        >"$work/pgbench$run.out" 2>&1 &
    writer=$!
    sleep 5
    started=$(date +%s.%N)
    curl -fsS -X POST "http://127.0.0.1:$((8138 + from))/switchover" \
        -d "{\"leader\": \"pg$((from + 1))\", \"candidate\": \"pg$((to + 1))\"}" >/dev/null
    moved() { [ "$(worker_leader)" = "$to" ] && [ "$(sql "SELECT nodeport FROM pg_dist_node WHERE groupid = 1 AND noderole = 'primary'")" = $((5491 + to)) ]; }
    wait_until 60 "the switchover to pg$((to + 1))" moved
    took=$(echo "$(date +%s.%N) $started" | awk '{ printf "%.1f", $1 - $2 }')
    wait "$writer" || true
    failed=$(grep -c "aborted\|ERROR" "$work/pgbench$run.out" || true)
    # pgbench's log: client, transaction, latency (µs), script, epoch s, µs.
    read -r window slow < <(cat "$work/run$run".* | awk '{ if ($3 > max) max = $3; if ($3 > 100000) slow++ } END { printf "%.3f %d\n", max / 1e6, slow }')
    windows+=("$window")
    printf '| %s | pg%s → pg%s | %s s | %s s | %s | %s |\n' "$run" $((from + 1)) $((to + 1)) "$took" "$window" "$slow" "$failed"
done
printf '%s\n' "${windows[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "\npause window: median %s s, max %s s over %d switchovers\n", v[int((NR + 1) / 2)], v[NR], NR }'
