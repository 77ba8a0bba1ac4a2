-- wrk -s bench/wrk-report.lua: one machine-readable summary line at the end
-- (no request/response hooks, so wrk keeps its fast path)
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d errors=%d non2xx=%d "
        .. "p50_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration,
        e.connect + e.read + e.write + e.timeout, e.status,
        latency:percentile(50), latency:percentile(99), latency.max))
end
