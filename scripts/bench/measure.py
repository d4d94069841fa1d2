"""The measuring half of bench-failover.sh: everything timed runs here, the shell
script only starts and stops clusters. Run with the Patroni venv's python (psycopg2).

Subcommands (each bounded by --timeout, each prints one JSON object on success and
exits 1 with a message on stderr otherwise):

  healthy    wait for one leader (GET /primary = 200) and the other members streaming
  failover   kill -9 the given process groups, then write until the first INSERT commits
  switchover write every 20 ms, run a trigger, report the window of failed writes
  idle       RSS and CPU of daemon processes over a period
  report     the Markdown table from the results file
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

TICK = 0.020  # the client's write / retry interval


def http_get(port, path):
    """(status, body) of GET path on 127.0.0.1:port, or (None, None)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, None


def healthy(args):
    """A leader's name once one member holds the lock and every other one streams."""
    members = dict(zip(args.names.split(","), args.api.split(",")))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        leaders = [n for n, p in members.items() if http_get(p, "/primary")[0] == 200]
        streaming = []
        for n, p in members.items():
            code, body = http_get(p, "/patroni")
            if code == 200 and body:
                s = json.loads(body)
                if s.get("role") == "replica" and s.get("replication_state") == "streaming":
                    streaming.append(n)
        if len(leaders) == 1 and len(streaming) == len(members) - 1:
            return {"leader": leaders[0]}
        time.sleep(0.5)
    sys.exit(f"timed out after {args.timeout}s: leaders {leaders}, streaming {streaming}")


def connect(dsn):
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def insert(conn, token):
    """One INSERT of token; returns the port of the server that took it."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO bench (token) VALUES (%s) RETURNING inet_server_port()", (token,))
        return cur.fetchone()[0]


def new_token():
    return f"{os.getpid()}-{time.time_ns()}"


def failover(args):
    """Seconds from kill -9 of the groups to the first committed INSERT."""
    for pgid in args.pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    t0 = time.monotonic()
    attempts = 0
    while time.monotonic() - t0 < args.timeout:
        attempts += 1
        started = time.monotonic()
        try:
            conn = connect(args.dsn)
            try:
                port = insert(conn, new_token())
            finally:
                conn.close()
            return {"seconds": round(time.monotonic() - t0, 3), "port": port, "attempts": attempts}
        except Exception:  # noqa: BLE001 - every failure is a retry
            time.sleep(max(0.0, TICK - (time.monotonic() - started)))
    sys.exit(f"no successful write within {args.timeout}s after the kill ({attempts} attempts)")


class Writer(threading.Thread):
    """Writes every TICK through one connection (reconnecting after an error) and
    records (start, end, ok, port) for each attempt, and the acknowledged tokens."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.dsn, self.log, self.stop, self.conn = dsn, [], threading.Event(), None
        self.acknowledged = []

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                if self.conn is None:
                    self.conn = connect(self.dsn)
                token = new_token()
                port = insert(self.conn, token)
                self.log.append((started, time.monotonic(), True, port))
                self.acknowledged.append(token)
            except Exception:  # noqa: BLE001 - a failed write is what we count
                self.log.append((started, time.monotonic(), False, None))
                if self.conn is not None:
                    try:
                        self.conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    self.conn = None
            next_at = max(next_at + TICK, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))


def switchover(args):
    """The failed writes around a switchover: count, and the window from the start of
    the first failed attempt to the end of the first success after the last failure."""
    w = Writer(args.dsn)
    w.start()
    deadline = time.monotonic() + args.timeout
    while not (len(w.log) >= 25 and all(ok for _, _, ok, _ in w.log[-25:])):
        if time.monotonic() > deadline:
            sys.exit("the writer did not get 0.5 s of successful writes before the switchover")
        time.sleep(0.05)
    old_port = w.log[-1][3]
    t_trigger = time.monotonic()
    trigger = subprocess.run(["bash", args.trigger], capture_output=True, text=True, timeout=args.timeout)
    if trigger.returncode != 0:
        sys.exit(f"trigger failed: {trigger.stdout}{trigger.stderr}")
    moved = None
    while time.monotonic() < deadline:
        moved = next((e for s, e, ok, p in w.log if ok and p != old_port and s >= t_trigger), None)
        if moved is not None and time.monotonic() > moved + 1.0:
            break
        time.sleep(0.05)
    w.stop.set()
    w.join(timeout=5)
    if moved is None:
        sys.exit(f"no write reached a new primary within {args.timeout}s of the trigger")
    log = [x for x in w.log if x[0] >= t_trigger]
    failed = [x for x in log if not x[2]]
    window = 0.0
    if failed:
        last_fail = failed[-1][0]
        recovered = next(e for s, e, ok, _ in log if ok and s > last_fail)
        window = recovered - failed[0][0]
    return {
        "window": round(window, 3),
        "failed": len(failed),
        "lost": lost_writes(args.dsn, w.acknowledged),
        "to_new_primary": round(moved - t_trigger, 3),
        "path": trigger.stdout.strip().splitlines()[-1] if trigger.stdout.strip() else "",
    }


def lost_writes(dsn, tokens):
    """How many acknowledged writes the (new) primary does not have."""
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = connect(dsn)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM bench WHERE token = ANY(%s)", (tokens,))
                    return len(tokens) - cur.fetchone()[0]
            finally:
                conn.close()
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def idle(args):
    """Mean VmRSS (MiB) and CPU (% of one core) per process over the period."""
    hz = os.sysconf("SC_CLK_TCK")

    def cpu_ticks(pid):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)

    def rss_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def thread_ticks(pid):
        """CPU ticks by thread name (comm), summed over the process's threads."""
        out = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
        return out

    pids = args.pid
    threads_before = {p: thread_ticks(p) for p in pids}
    start = {p: cpu_ticks(p) for p in pids}
    t0 = time.monotonic()
    samples = {p: [] for p in pids}
    while time.monotonic() - t0 < args.seconds:
        for p in pids:
            samples[p].append(rss_kib(p))
        time.sleep(1.0)
    elapsed = time.monotonic() - t0
    cpu = [(cpu_ticks(p) - start[p]) / hz / elapsed * 100 for p in pids]
    by_thread = {}
    for p in pids:
        for name, ticks in thread_ticks(p).items():
            used = ticks - threads_before[p].get(name, 0)
            by_thread[name] = by_thread.get(name, 0) + used / hz / elapsed * 100 / len(pids)
    rss = [statistics.mean(samples[p]) / 1024 for p in pids]
    return {
        "rss_mib": round(statistics.mean(rss), 1),
        "cpu_pct": round(statistics.mean(cpu), 2),
        "per_process": [{"rss_mib": round(r, 1), "cpu_pct": round(c, 2)} for r, c in zip(rss, cpu)],
        "cpu_pct_by_thread": {n: round(v, 3) for n, v in sorted(by_thread.items(), key=lambda x: -x[1]) if v > 0},
    }


# --- the table ---------------------------------------------------------------------

# (label, kind, profile or None, field, unit)
ROWS = [
    ("hard primary loss → first write, Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10)",
     "failover", "30/10/10", "seconds", " s"),
    ("hard primary loss → first write, Patroni's floor (ttl 20, loop_wait 1, retry_timeout 3)",
     "failover", "20/1/3", "seconds", " s"),
    ("hard primary loss → first write, Keel's floor (ttl 4, loop_wait 1, retry_timeout 1); "
     "Patroni column: its floor", "failover", "4/1/1", "seconds", " s"),
    ("switchover: window of failed writes (first failure → first success)",
     "switchover", None, "window", " s"),
    ("switchover: failed writes (one attempt every 20 ms)", "switchover", None, "failed", ""),
    ("switchover: acknowledged writes missing on the new primary", "switchover", None, "lost", ""),
    ("switchover: trigger → first write on the new primary", "switchover", None, "to_new_primary", " s"),
    ("idle daemon RSS, mean of the 3 daemons", "idle", None, "rss_mib", " MiB"),
    ("idle daemon CPU, mean of the 3 daemons (% of one core)", "idle", None, "cpu_pct", " %"),
]


def cell(values, unit):
    """Median (min–max) of values, and the median."""
    if not values:
        return "—", None
    med = statistics.median(values)

    def fmt(v):
        if unit == "":
            return f"{v:.0f}"
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"

    text = f"{fmt(med)}{unit}"
    if len(values) > 1:
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    return text, med


def report(args):
    """The Markdown table of a results file (one JSON object a line, written by the script)."""
    with open(args.results) as f:
        records = [json.loads(line) for line in f if line.strip()]

    def values(system, kind, profile, field):
        return [r["result"][field] for r in records
                if r["system"] == system and r["kind"] == kind
                and (profile is None or r["profile"] == profile)]

    out = ["| measurement | Keel | Patroni 4.1 | Keel / Patroni |", "|---|---|---|---|"]
    for label, kind, profile, field, unit in ROWS:
        k_text, k_med = cell(values("keel", kind, profile, field), unit)
        # Patroni refuses a ttl below 20: its floor stands beside Keel's.
        p_profile = "20/1/3" if profile == "4/1/1" else profile
        p_text, p_med = cell(values("patroni", kind, p_profile, field), unit)
        if k_med is None and p_med is None:
            continue
        ratio = f"{k_med / p_med:.2f}×" if k_med is not None and p_med else "—"
        out.append(f"| {label} | {k_text} | {p_text} | {ratio} |")
    print("\n".join(out))
    runs = max((len(values(s, "failover", "30/10/10", "seconds")) for s in ("keel", "patroni")), default=0)
    print(f"\nMedian (min–max) over {runs} run(s) each; the ratio is of the medians.")
    for system in ("keel", "patroni"):
        paths = sorted({r["result"]["path"] for r in records
                        if r["system"] == system and r["kind"] == "switchover"})
        if paths:
            print(f"Switchover path, {system}: {'; '.join(paths)}.")
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("healthy")
    s.add_argument("--api", required=True, help="REST ports, comma-separated")
    s.add_argument("--names", required=True, help="member names, same order")
    s.add_argument("--timeout", type=float, default=180)
    s = sub.add_parser("failover")
    s.add_argument("--dsn", required=True)
    s.add_argument("--pgid", type=int, action="append", required=True)
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("switchover")
    s.add_argument("--dsn", required=True)
    s.add_argument("--trigger", required=True, help="a bash script; its last output line names the path")
    s.add_argument("--timeout", type=float, default=90)
    s = sub.add_parser("idle")
    s.add_argument("--pid", type=int, action="append", required=True)
    s.add_argument("--seconds", type=float, default=60)
    s = sub.add_parser("report")
    s.add_argument("results")
    args = p.parse_args()
    result = globals()[args.cmd](args)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
