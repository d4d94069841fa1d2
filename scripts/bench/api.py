"""The measuring half of bench-api.sh: one wrk run against one member's REST API,
and the table of a results file. The shell script only starts and stops clusters.

Subcommands:

  run     check the URL answers 200, warm up, then one measured wrk run; prints one
          JSON object (requests/s, latencies, errors, the daemon's and PostgreSQL's
          CPU time and the daemon's RSS over the run). Exits 1 when the daemon died,
          or when errors (responses other than 200, socket errors) exceed
          --max-error-ratio.
  report  the Markdown tables (every figure, then the short one) from the results file
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")
ERROR_KINDS = ("connect", "read", "write", "timeout")
WARNING = re.compile(r"\b(WARN|WARNING|ERROR|CRITICAL|FATAL|panicked)\b")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state is index 0)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime


def thread_seconds(pid):
    """CPU seconds by thread name, summed over the process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / HZ
    return out


def postgres_seconds(postmaster):
    """CPU seconds of the postmaster, its live children, and its reaped children."""
    fields = stat_fields(postmaster)
    total = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == postmaster:
            continue
        try:
            f = stat_fields(entry)
        except OSError:
            continue
        if int(f[1]) == postmaster:  # ppid
            total += int(f[11]) + int(f[12])
    return total / HZ


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def check_200(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError as e:
        sys.exit(f"GET {url}: {e}")
    if code != 200:
        sys.exit(f"GET {url} answered {code}, not 200: nothing worth measuring")


def wrk(args, seconds, extra):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s", *extra]
    if args.close:
        cmd += ["-H", "Connection: close"]
    cmd.append(args.url)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        sys.exit(f"wrk did not finish within {seconds + 30}s: {' '.join(cmd)}")
    if p.returncode != 0:
        sys.exit(f"wrk failed ({p.returncode}): {p.stderr.strip()}")
    return cmd, p.stdout


def run(args):
    check_200(args.url)
    if args.warmup > 0:
        wrk(args, args.warmup, [])
    pid, pg = args.daemon_pid, args.pg_pid
    log_at = os.path.getsize(args.log)
    load = os.getloadavg()[0]
    rss0, threads0 = status_kib(pid, "VmRSS"), thread_seconds(pid)
    cpu0, pg0 = cpu_seconds(pid), postgres_seconds(pg) if pg else None
    cmd, out = wrk(args, args.duration, ["--latency", "-s", args.lua])
    try:
        cpu1, rss1, hwm = cpu_seconds(pid), status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
        threads1 = thread_seconds(pid)
    except OSError:
        sys.exit(f"the daemon (pid {pid}) died during the run")
    pg1 = postgres_seconds(pg) if pg else None
    with open(args.raw, "w") as f:
        f.write(" ".join(cmd) + "\n" + out)
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        sys.exit(f"no WRK_JSON line in wrk's output:\n{out}")
    w = json.loads(line[len("WRK_JSON "):])
    with open(args.log, errors="replace") as f:
        f.seek(log_at)
        warnings = [x.rstrip() for x in f if WARNING.search(x)]
    seconds = w["duration_us"] / 1e6
    daemon_cpu = cpu1 - cpu0
    # wrk counts a read error for each response whose body ended at the connection's
    # close (Patroni: HTTP/1.0, no Content-Length) although it arrived whole; a reset
    # before a response counts one without a response.
    errors = {k: w[k] for k in ERROR_KINDS if k != "read"}
    errors["read"] = max(0, w["read"] - w["eof_delimited"])
    errors["not_200"] = w["requests"] - w["status_200"]
    result = {
        "requests": w["requests"],
        "rps": round(w["requests"] / seconds, 1),
        "p50_ms": round(w["p50_us"] / 1000, 3),
        "p90_ms": round(w["p90_us"] / 1000, 3),
        "p99_ms": round(w["p99_us"] / 1000, 3),
        "p999_ms": round(w["p999_us"] / 1000, 3),
        "max_ms": round(w["max_us"] / 1000, 3),
        "errors": errors,
        "responses_ended_by_close": w["eof_delimited"],
        "daemon_cpu_s": round(daemon_cpu, 2),
        "daemon_cpu_pct": round(daemon_cpu / seconds * 100, 1),
        "requests_per_daemon_cpu_s": round(w["requests"] / daemon_cpu, 1) if daemon_cpu > 0 else None,
        "postgres_cpu_s": round(pg1 - pg0, 2) if pg else None,
        "daemon_cpu_s_by_thread": busiest_threads(threads0, threads1),
        "rss_mib_before": round(rss0 / 1024, 1),
        "rss_mib_after": round(rss1 / 1024, 1),
        "hwm_mib": round(hwm / 1024, 1),
        "log_warnings": len(warnings),
        "log_warnings_sample": warnings[:3],
        "loadavg_1m_before": round(load, 2),
    }
    bad = sum(errors.values())
    if bad > args.max_error_ratio * max(w["requests"], 1):
        print(out, file=sys.stderr)
        sys.exit(f"{bad} errors in {w['requests']} requests ({errors}): above "
                 f"{args.max_error_ratio:.2%}, the figures are worthless")
    return result


def busiest_threads(before, after):
    """CPU seconds used during the run by thread name, busiest first (0.01 s or more)."""
    used = {n: round(v - before.get(n, 0), 2) for n, v in after.items()}
    return dict(sorted(((n, v) for n, v in used.items() if v >= 0.01), key=lambda x: -x[1]))


# --- the tables ----------------------------------------------------------------------

def fmt(v):
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def ratio(k, p):
    return f"{k / p:.2f}×" if k is not None and p else "—"


def report(args):
    with open(args.results) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:  # the whole cost of a request: the daemon and its PostgreSQL
        x = r["result"]
        cpu = x["daemon_cpu_s"] + (x["postgres_cpu_s"] or 0)
        x["requests_per_total_cpu_s"] = round(x["requests"] / cpu, 1) if cpu > 0 else None
    requests = list(dict.fromkeys(r["request"] for r in records))
    by = {(r["system"], r["request"]): r["result"] for r in records}
    columns = [("requests/s", "rps", ""), ("p50", "p50_ms", " ms"), ("p99", "p99_ms", " ms"),
               ("max", "max_ms", " ms"), ("daemon CPU", "daemon_cpu_pct", " %"),
               ("requests per daemon CPU-s", "requests_per_daemon_cpu_s", ""),
               ("PostgreSQL CPU", "postgres_cpu_s", " s"),
               ("requests per CPU-s, daemon + PostgreSQL", "requests_per_total_cpu_s", ""),
               ("errors", None, ""),
               ("daemon RSS before → after", None, "")]
    out = ["| request | figure | Keel | Patroni 4.1 | Keel / Patroni |", "|---|---|---|---|---|"]
    for req in requests:
        k, p = by.get(("keel", req)), by.get(("patroni", req))
        for label, key, unit in columns:
            if key is None and label == "errors":
                kv = sum(k["errors"].values()) if k else None
                pv = sum(p["errors"].values()) if p else None
                out.append(f"| {req} | {label} | {fmt(kv)} | {fmt(pv)} | |")
                continue
            if key is None:
                kt = f"{k['rss_mib_before']} → {k['rss_mib_after']} MiB" if k else "—"
                pt = f"{p['rss_mib_before']} → {p['rss_mib_after']} MiB" if p else "—"
                out.append(f"| {req} | {label} | {kt} | {pt} | |")
                continue
            kv, pv = (k or {}).get(key), (p or {}).get(key)
            kt = fmt(kv) + unit if kv is not None else "—"
            pt = fmt(pv) + unit if pv is not None else "—"
            out.append(f"| {req} | {label} | {kt} | {pt} | {ratio(kv, pv)} |")
    print("\n".join(out))
    print()
    short = ["| request | requests/s Keel / Patroni | × | p99 Keel / Patroni | × "
             "| requests per daemon CPU-second Keel / Patroni | × "
             "| per CPU-second with PostgreSQL's | × |", "|---|---|---|---|---|---|---|---|---|"]
    for req in requests:
        k, p = by.get(("keel", req)) or {}, by.get(("patroni", req)) or {}

        def pair(key, unit=""):
            return f"{fmt(k.get(key))} / {fmt(p.get(key))}{unit}"

        short.append(f"| {req} | {pair('rps')} | {ratio(k.get('rps'), p.get('rps'))} "
                     f"| {pair('p99_ms', ' ms')} | {ratio(k.get('p99_ms'), p.get('p99_ms'))} "
                     f"| {pair('requests_per_daemon_cpu_s')} "
                     f"| {ratio(k.get('requests_per_daemon_cpu_s'), p.get('requests_per_daemon_cpu_s'))} "
                     f"| {pair('requests_per_total_cpu_s')} "
                     f"| {ratio(k.get('requests_per_total_cpu_s'), p.get('requests_per_total_cpu_s'))} |")
    print("\n".join(short))
    loads = [r["result"]["loadavg_1m_before"] for r in records]
    if loads:
        print(f"\nLoad average (1 min) before the runs: median {statistics.median(loads):.2f}, "
              f"max {max(loads):.2f}.")
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run")
    s.add_argument("--url", required=True)
    s.add_argument("--daemon-pid", type=int, required=True)
    s.add_argument("--pg-pid", type=int, help="the member's postmaster")
    s.add_argument("--log", required=True, help="the daemon's log, scanned for warnings written during the run")
    s.add_argument("--lua", required=True, help="wrk-summary.lua")
    s.add_argument("--raw", required=True, help="where wrk's own output goes")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--connections", type=int, default=32)
    s.add_argument("--duration", type=int, default=15)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--close", action="store_true", help="a new connection per request (Connection: close)")
    s.add_argument("--max-error-ratio", type=float, default=0.001)
    s = sub.add_parser("report")
    s.add_argument("results")
    args = p.parse_args()
    result = globals()[args.cmd](args)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
