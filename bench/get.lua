-- wrk script for bench/api.sh: GET /v1/distributions/{id} with ids drawn at random from
-- IDS_FILE and the bearer token from TOKEN.
local ids = {}
local token = os.getenv("TOKEN")

for line in io.lines(os.getenv("IDS_FILE")) do
    ids[#ids + 1] = line
end

request = function()
    local id = ids[math.random(#ids)]
    return wrk.format("GET", "/v1/distributions/" .. id, { ["Authorization"] = "Bearer " .. token })
end

done = function(summary, latency, requests)
    io.write(string.format("p50_ms=%.2f p99_ms=%.2f non2xx=%d\n",
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.status))
end
