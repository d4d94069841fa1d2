#!/usr/bin/env bash
# The REST API under concurrent load, Keel against Patroni 4.1 on loopback: one etcd,
# the same PostgreSQL 15, the same patroni.yml (Patroni's default timings), 3 members
# each, one system after the other (never both at once). Once a system's leader holds
# the lock and both replicas stream, wrk (fixed threads, connections and duration,
# after a warm-up that is not counted) measures, on keep-alive connections,
#   GET /primary and GET /patroni on the leader, GET /replica on a replica,
# and GET /primary on the leader with a new connection per request (Connection:
# close), as HAProxy's health checks do. Each run records requests/s, p50/p99/max
# latency, errors, the daemon's CPU time (utime+stime from /proc; PostgreSQL's apart)
# and RSS. A run fails when more than 0.1 % of its requests get a status other than
# 200 or a socket error (a body ended by the server's close is no error), or when the
# leader changes.
#
# Usage: scripts/bench-api.sh [--only keel|patroni] [--quick] [--keep]
#                             [--duration S] [--warmup S] [--connections N] [--threads N]
#   --duration S     seconds of each measured run (default 15)
#   --warmup S       seconds of load before each measured run (default 3)
#   --connections N  open connections (default 32)
#   --threads N      wrk threads (default 2)
#   --quick          5 s runs after a 1 s warm-up: for development
#   --keep           keep the work directory (configs, logs, results) instead of removing it
# Output: the tables on stdout, JSON lines in <work>/results.jsonl, wrk's own report
# per run in <work>/wrk/. Ports: etcd 23820 (KEEL_BENCH_API_ETCD_PORT), Keel
# 8118-8120 / 5471-5473, Patroni 8218-8220 / 5481-5483. Daemons run as the user
# `keel` when started as root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

only="" keep=0 duration=15 warmup=3 connections=32 threads=2
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only="$2"; shift 2 ;;
        --quick) duration=5 warmup=1; shift ;;
        --keep) keep=1; shift ;;
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$only" in ""|keel|patroni) ;; *) echo "--only takes keel or patroni" >&2; exit 2 ;; esac
for n in "$duration" "$connections" "$threads"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--duration, --connections and --threads take a positive number" >&2; exit 2; }
done
[[ "$warmup" =~ ^[0-9]+$ ]] || { echo "--warmup takes a number of seconds" >&2; exit 2; }
[ "$threads" -le "$connections" ] || { echo "wrk needs at least one connection per thread" >&2; exit 2; }
systems=(keel patroni)
[ -z "$only" ] || systems=("$only")

bash scripts/setup.sh
command -v wrk >/dev/null 2>&1 || { echo "wrk is missing: run scripts/setup.sh as root" >&2; exit 1; }
. scripts/lib/cluster.sh
. scripts/lib/bench.sh
ETCD_PORT="${KEEL_BENCH_API_ETCD_PORT:-23820}"
KEEL_API_BASE=8118 KEEL_PG_BASE=5471 PATRONI_API_BASE=8218 PATRONI_PG_BASE=5481
bench_init keel-bench-api
mkdir -p "$work/wrk"

api() { timeout --foreground $((warmup + duration + 120)) "$py" -B scripts/bench/api.py "$@"; }

# bench_request LABEL MEMBER_INDEX PATH [api.py run flags]: one measured run, recorded;
# then the same leader must still hold the lock with both replicas streaming.
bench_request() {
    local label="$1" i="$2" path="$3"; shift 3
    local pm out slug now
    pm="$(postmaster_pid "${datas[$i]}")"
    [ -n "$pm" ] || die "${names[$i]}: no PostgreSQL running"
    slug="$(tr -c 'a-z0-9\n' '-' <<<"${label,,}" | tr -s '-')"
    log "$system: $label on ${names[$i]} (wrk -t$threads -c$connections, ${duration} s after ${warmup} s)"
    out="$(api run --url "http://127.0.0.1:${apis[$i]}$path" --daemon-pid "${daemons[$i]}" \
        --pg-pid "$pm" --log "${logs[$i]}" --lua scripts/bench/wrk-summary.lua \
        --raw "$work/wrk/$system-${slug%-}.txt" --threads "$threads" --connections "$connections" \
        --duration "$duration" --warmup "$warmup" "$@")" || die "$system: $label"
    printf '{"system": "%s", "request": "%s", "member": "%s", "threads": %d, "connections": %d, "duration": %d, "result": %s}\n' \
        "$system" "$label" "${names[$i]}" "$threads" "$connections" "$duration" "$out" >>"$results"
    echo "   $system $label: $out" >&2
    now="$(wait_healthy 60)"
    [ "$now" = "$leader" ] || die "$system: the leader moved from ${names[$leader]} to ${names[$now]} under load"
}

bench_start_etcd
for system in "${systems[@]}"; do
    start_members "$system" "30 10 10"
    leader="$(wait_healthy 300)"
    replica=$(((leader + 1) % 3))
    bench_request "GET /primary" "$leader" /primary
    bench_request "GET /patroni" "$leader" /patroni
    bench_request "GET /replica" "$replica" /replica
    bench_request "GET /primary, a new connection per request" "$leader" /primary --close
    stop_cluster
done

log "results ($(nproc) cores, $(date -u +%Y-%m-%d), keel $(git rev-parse --short HEAD), wrk -t$threads -c$connections -d${duration}s)"
api report "$results"
