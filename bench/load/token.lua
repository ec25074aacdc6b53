-- client_credentials at the token endpoint; a success carries an access_token.
-- Env: SCENARIO, TOKEN_URL_PATH, CLIENT_ID, CLIENT_SECRET, SCOPE; TOKENS_OUT (optional) keeps
-- every token issued, one per line, for the revocation scenario; CLIENT_SPREAD=K (optional)
-- sends the requests in turn as clients bench-0 .. bench-(K-1), each with its id as secret
-- (the clients of bench/generate_log.rs), instead of CLIENT_ID; SPREAD_SECRET (optional) is
-- then the secret of every one of them instead of its id.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
local out = os.getenv("TOKENS_OUT")
local sink = nil
local spread = tonumber(os.getenv("CLIENT_SPREAD") or "")
local body = "grant_type=client_credentials&scope=" .. lib.form(lib.env("SCOPE", "read"))
local cycle = nil
if spread then
  cycle = {}
  for i = 0, spread - 1 do
    cycle[i + 1] = { body, lib.basic("bench-" .. i, os.getenv("SPREAD_SECRET") or ("bench-" .. i)) }
  end
end
lib.scenario({
  path = lib.env("TOKEN_URL_PATH"),
  body = body,
  cycle = cycle,
  check = function(answer) return answer:find('"access_token":"', 1, true) ~= nil end,
  on_ok = out and function(answer)
    if not sink then
      sink = io.open(out, "a")
      sink:setvbuf("line")
    end
    sink:write(answer:match('"access_token":"([^"]+)"'), "\n")
  end,
})
