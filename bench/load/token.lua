-- client_credentials at the token endpoint; a success carries an access_token.
-- Env: SCENARIO, TOKEN_URL_PATH, CLIENT_ID, CLIENT_SECRET, SCOPE; TOKENS_OUT (optional) keeps
-- every token issued, one per line, for the revocation scenario; CLIENT_SPREAD=K (optional)
-- sends the requests in turn as clients bench-0 .. bench-(K-1), each with its id as secret
-- (the clients of bench/generate_log.rs), instead of CLIENT_ID.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
local out = os.getenv("TOKENS_OUT")
local sink = nil
local spread = tonumber(os.getenv("CLIENT_SPREAD") or "")
local next_auth = nil
if spread then
  local i = -1
  next_auth = function()
    i = (i + 1) % spread
    local id = "bench-" .. i
    return "Basic " .. lib.base64(id .. ":" .. id)
  end
end
lib.scenario({
  path = lib.env("TOKEN_URL_PATH"),
  body = "grant_type=client_credentials&scope=" .. lib.form(lib.env("SCOPE", "read")),
  check = function(body) return body:find('"access_token":"', 1, true) ~= nil end,
  next_auth = next_auth,
  on_ok = out and function(body)
    if not sink then
      sink = io.open(out, "a")
      sink:setvbuf("line")
    end
    sink:write(body:match('"access_token":"([^"]+)"'), "\n")
  end,
})
