-- GET a random seeded job: /fhir/R4/AsyncJob/bench-NNNNNNN with NNNNNNN < BENCH_JOBS.
local jobs = tonumber(os.getenv("BENCH_JOBS") or "1000")

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

request = function()
  local path = string.format("/fhir/R4/AsyncJob/bench-%07d", math.random(0, jobs - 1))
  return wrk.format("GET", path)
end
