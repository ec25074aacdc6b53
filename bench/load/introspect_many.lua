-- RFC 7662 introspection of random live tokens of a log written by bench/generate_log.rs:
-- each request introspects another token, as its owner, so that the token index answers from
-- all of its rows rather than from one cached row.
-- Env: SCENARIO, INTROSPECT_URL_PATH, TOKENS (the generator's token counter reached, about
-- 0.9 x its event count), CLIENTS (the generator's client count).
--
-- The generator numbers events n = 1, 2, ... in appends of 500 for one client at a time
-- (client ((n - 1) // 500) % CLIENTS); event n is a token whose opaque value is the decimal n,
-- except when n % 10 == 0, which revokes token n - 1. So live tokens are those with n % 10 in
-- 1..8.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
local tokens = tonumber(lib.env("TOKENS"))
local clients = tonumber(lib.env("CLIENTS"))
lib.scenario({
  path = lib.env("INTROSPECT_URL_PATH"),
  next_request = function()
    local n = math.random(0, math.floor(tokens / 10) - 1) * 10 + math.random(1, 8)
    local owner = "bench-" .. (math.floor((n - 1) / 500) % clients)
    return "token=" .. n .. "&token_type_hint=access_token", lib.basic(owner, owner)
  end,
  check = function(body) return body:gsub("%s", ""):find('"active":true', 1, true) ~= nil end,
})
