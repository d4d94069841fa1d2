-- bench-api.sh: after wrk's own report, one line "WRK_JSON {...}" with the exact
-- figures: latencies in µs from wrk's histogram, wrk's error counts by kind, and per
-- response the status (200 or not) and whether its body ended at the connection's
-- close (HTTP/1.0 without Content-Length, as Patroni answers): wrk counts each of
-- those as a read error although the response arrived whole.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(_)
    ok, other, eof = 0, 0, 0
end

function response(status, headers, _)
    if status == 200 then ok = ok + 1 else other = other + 1 end
    local framed = false
    for name, _ in pairs(headers) do
        local n = string.lower(name)
        if n == "content-length" or n == "transfer-encoding" then framed = true end
    end
    if not framed then eof = eof + 1 end
end

function done(summary, latency, _)
    local ok_all, other_all, eof_all = 0, 0, 0
    for _, t in ipairs(threads) do
        ok_all = ok_all + t:get("ok")
        other_all = other_all + t:get("other")
        eof_all = eof_all + t:get("eof")
    end
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
            .. '"write": %d, "status": %d, "timeout": %d, "status_200": %d, "status_other": %d, '
            .. '"eof_delimited": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, '
            .. '"max_us": %d, "mean_us": %.1f}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
        e.timeout, ok_all, other_all, eof_all, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
