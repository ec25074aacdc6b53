-- What every scenario of bench/compare.sh shares: client authentication, form encoding, the
-- response check, and one result line per run:
--   scenario=.. requests=.. seconds=.. rps=.. p50_ms=.. p99_ms=.. errors=.. first_error=..
-- An error is a socket error, a non-2xx answer, or a 2xx whose body fails the scenario's
-- check: a fast wrong answer must never count as a success.
local lib = {}

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function lib.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = {}
    for j = 4, 1, -1 do
      quad[j] = n % 64
      n = math.floor(n / 64)
    end
    out[#out + 1] = alphabet:sub(quad[1] + 1, quad[1] + 1) .. alphabet:sub(quad[2] + 1, quad[2] + 1)
      .. (b and alphabet:sub(quad[3] + 1, quad[3] + 1) or "=")
      .. (c and alphabet:sub(quad[4] + 1, quad[4] + 1) or "=")
  end
  return table.concat(out)
end

-- application/x-www-form-urlencoded, as RFC 6749 section 2.3.1 asks for Basic credentials too.
function lib.form(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

function lib.env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    if default == nil then error("set " .. name) end
    return default
  end
  return v
end

-- The Authorization header of HTTP Basic client authentication.
function lib.basic(id, secret)
  return "Basic " .. lib.base64(lib.form(id) .. ":" .. lib.form(secret))
end

-- opts: path; body (every request the same, as CLIENT_ID / CLIENT_SECRET), or cycle (a list of
-- {body, Authorization header} sent in turn, each formatted once before the run so that the
-- load generator does no more work per request than with one fixed request), or next_request
-- (a function returning the next body and Authorization header, or nil when the supply ran
-- out); spent_body (sent once next_request ran out); check (function(body) -> bool, optional);
-- on_ok (function(body), optional).
function lib.scenario(opts)
  local name = lib.env("SCENARIO")
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
  }
  -- CLIENT_ID / CLIENT_SECRET, read only by scenarios that send as one client.
  local fixed_auth = nil
  local function default_auth()
    fixed_auth = fixed_auth or lib.basic(lib.env("CLIENT_ID"), lib.env("CLIENT_SECRET"))
    return fixed_auth
  end
  local threads = {}
  local formatted, count = {}, 0

  function setup(thread)
    threads[#threads + 1] = thread
  end

  function init()
    bad = 0
    exhausted = 0
    first_error = ""
    -- Formatted here, where wrk knows the Host header, before the run is timed.
    for n, r in ipairs(opts.cycle or {}) do
      headers["Authorization"] = r[2]
      formatted[n] = wrk.format("POST", opts.path, headers, r[1])
    end
    count = #formatted
  end

  if opts.cycle then
    local i = 0
    function request()
      i = i % count + 1
      return formatted[i]
    end
  elseif opts.next_request then
    function request()
      local body, auth = opts.next_request()
      if body == nil then
        -- Out of fresh inputs: the answer would measure another path, so it is an error.
        exhausted = exhausted + 1
        body, auth = opts.spent_body, nil
      end
      headers["Authorization"] = auth or default_auth()
      return wrk.format("POST", opts.path, headers, body)
    end
  else
    wrk.method = "POST"
    wrk.path = opts.path
    wrk.body = opts.body
    headers["Authorization"] = default_auth()
    wrk.headers = headers
  end

  function response(status, _, body)
    local ok = status >= 200 and status < 300 and (opts.check == nil or opts.check(body))
    if not ok then
      bad = bad + 1
      if first_error == "" then
        first_error = (status .. " " .. tostring(body)):sub(1, 120):gsub("[%s=]", "_")
      end
    elseif opts.on_ok then
      opts.on_ok(body)
    end
  end

  function done(summary, latency)
    local bad_total, exhausted_total, sample = 0, 0, ""
    for _, t in ipairs(threads) do
      bad_total = bad_total + (t:get("bad") or 0)
      exhausted_total = exhausted_total + (t:get("exhausted") or 0)
      if sample == "" then sample = t:get("first_error") or "" end
    end
    local e = summary.errors
    local errors = bad_total + exhausted_total + e.connect + e.read + e.write + e.timeout
    local seconds = summary.duration / 1e6
    io.write(string.format(
      "scenario=%s requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d first_error=%s\n",
      name, summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors,
      sample == "" and "-" or sample))
  end
end

return lib
