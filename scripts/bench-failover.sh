#!/usr/bin/env bash
# Keel against Patroni 4.1 on loopback: one etcd, the same PostgreSQL 15, the same
# patroni.yml, 3 members each, one system after the other (never both at once).
#
#   (a) hard primary loss: kill -9 the leader's daemon and PostgreSQL (both process
#       groups) at a point of the leader's cycle spread over the runs, then time
#       until the first INSERT commits through
#       host=a,b,c target_session_attrs=read-write, retried every 20 ms. Run with
#       Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10), with Patroni's
#       floor (20 / 1 / 3) and, Keel only, with Keel's floor (4 / 1 / 1).
#   (b) switchover (defaults) through POST /switchover (patronictl for Patroni; the
#       failover key in etcd if Keel answers 501): a writer inserts every 20 ms
#       through the same URL; the window of failed writes, their number, and how
#       many acknowledged writes the new primary lacks.
#   (c) idle daemons (defaults): mean VmRSS and CPU of the 3 daemons over 60 s,
#       PostgreSQL excluded.
#
# Usage: scripts/bench-failover.sh [--runs N] [--only keel|patroni] [--quick] [--keep]
#   --runs N   repetitions of (a) and (b) (default 3); median and min–max are printed
#   --quick    1 run, 10 s idle: for development
#   --keep     keep the work directory (configs, logs, results) instead of removing it
# Ports: etcd 23800 (KEEL_BENCH_ETCD_PORT), Keel 8108-8110 / 5451-5453,
# Patroni 8208-8210 / 5461-5463. Daemons run as the user `keel` when started as root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

runs=3 only="" quick=0 keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --quick) quick=1; runs=1; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$only" in ""|keel|patroni) ;; *) echo "--only takes keel or patroni" >&2; exit 2 ;; esac
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }
systems=(keel patroni)
[ -z "$only" ] || systems=("$only")
idle_seconds=60 settle=20
[ "$quick" -eq 0 ] || { idle_seconds=10; settle=5; }

bash scripts/setup.sh
. scripts/lib/cluster.sh
. scripts/lib/bench.sh
ETCD_PORT="${KEEL_BENCH_ETCD_PORT:-23800}"
bench_init keel-bench

# start_cluster SYSTEM "TTL LOOP_WAIT RETRY_TIMEOUT": 3 fresh members, healthy, with
# the table the writers insert into.
start_cluster() {
    start_members "$@"
    wait_healthy 300 >/dev/null
    timeout --foreground 30 /usr/lib/postgresql/15/bin/psql -q "$dsn" \
        -c 'CREATE TABLE bench (token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())' ||
        die "could not create the table"
}

record() { # kind result-json
    echo "{\"system\": \"$system\", \"kind\": \"$1\", \"profile\": \"$profile\", \"result\": $2}" >>"$results"
    echo "   $system $1 $profile: $2" >&2
}

bench_failover() { # run number
    local leader pgids out loop_wait delay
    leader="$(wait_healthy 300)"
    # The leader renews its lease once per loop_wait, so the time to failover depends
    # on when in that cycle it dies: spread the kills over the cycle (stratified, with
    # jitter) instead of always killing at the moment the cluster became healthy.
    read -r _ loop_wait _ <<<"$TIMINGS"
    delay="$(awk -v lw="$loop_wait" -v r="$1" -v n="$runs" -v u="$RANDOM" \
        'BEGIN { printf "%.2f", lw * (r - 1 + u / 32768) / n }')"
    sleep "$delay"
    pgids=(--pgid "${daemons[$leader]}")
    local pm; pm="$(postmaster_pgid "${datas[$leader]}")"
    [ -z "$pm" ] || [ "$pm" = "${daemons[$leader]}" ] || pgids+=(--pgid "$pm")
    log "$system $profile failover $1/$runs: kill -9 ${names[$leader]} (groups ${pgids[*]//--pgid /}) ${delay} s into the cycle"
    out="$(measure failover --dsn "$dsn" "${pgids[@]}" --timeout 180)" || die "no new primary after the kill"
    record failover "$out"
    start_daemon "$leader"
    wait_healthy 300 >/dev/null
}

bench_switchover() { # run number
    local leader trigger="$work/$SCOPE/trigger.sh" out loop_wait
    leader="$(wait_healthy 300)"
    if [ "$system" = keel ]; then
        # Keel may not serve POST /switchover yet; then the failover key is written
        # directly, as patronictl does when the REST call fails.
        cat >"$trigger" <<SH
body=\$(mktemp)
code=\$(curl -s -o "\$body" -w '%{http_code}' -m 60 -X POST -H 'Content-Type: application/json' \\
    -d '{"leader": "${names[$leader]}"}' http://127.0.0.1:${apis[$leader]}/switchover || true)
echo "POST /switchover: HTTP \$code \$(cat "\$body")" >&2
rm -f "\$body"
case "\$code" in
    2??) echo "POST /switchover (HTTP \$code)" ;;
    501|404|405) ETCDCTL_API=3 timeout 10 etcdctl --endpoints=127.0.0.1:$ETCD_PORT \\
           put $NAMESPACE$SCOPE/failover '{"leader":"${names[$leader]}"}' >&2 &&
       echo "failover key written with etcdctl (POST /switchover answered HTTP \$code)" ;;
    *) exit 1 ;;
esac
SH
    else
        cat >"$trigger" <<SH
timeout 60 $venv/bin/patronictl -c ${cfgs[$leader]} switchover --force --leader ${names[$leader]} >&2 &&
echo "patronictl switchover --force"
SH
    fi
    read -r _ loop_wait _ <<<"$TIMINGS"
    log "$system $profile switchover $1/$runs: away from ${names[$leader]}"
    out="$(measure switchover --dsn "$dsn" --trigger "$trigger" --timeout $((3 * loop_wait + 60)))" ||
        die "switchover did not complete"
    record switchover "$out"
}

bench_idle() {
    wait_healthy 300 >/dev/null
    log "$system: settling ${settle} s, then idle for ${idle_seconds} s"
    sleep "$settle"
    local args=() d out
    for d in "${daemons[@]}"; do args+=(--pid "$d"); done
    out="$(measure idle "${args[@]}" --seconds "$idle_seconds")" || die "idle measurement failed"
    record idle "$out"
}

bench_start_etcd

for system in "${systems[@]}"; do
    profiles=("30 10 10" "20 1 3")
    [ "$system" = patroni ] || profiles+=("4 1 1")
    for p in "${profiles[@]}"; do
        start_cluster "$system" "$p"
        if [ "$p" = "30 10 10" ]; then
            bench_idle
            for r in $(seq "$runs"); do bench_switchover "$r"; done
        fi
        for r in $(seq "$runs"); do bench_failover "$r"; done
        stop_cluster
    done
done

log "results ($(nproc) cores, $(date -u +%Y-%m-%d), keel $(git rev-parse --short HEAD))"
measure report "$results"
