-- client_credentials at the token endpoint; a success carries an access_token.
-- Env: SCENARIO, TOKEN_URL_PATH, CLIENT_ID, CLIENT_SECRET, SCOPE; TOKENS_OUT (optional) keeps
-- every token issued, one per line, for the revocation scenario.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
local out = os.getenv("TOKENS_OUT")
local sink = nil
lib.scenario({
  path = lib.env("TOKEN_URL_PATH"),
  body = "grant_type=client_credentials&scope=" .. lib.form(lib.env("SCOPE", "read")),
  check = function(body) return body:find('"access_token":"', 1, true) ~= nil end,
  on_ok = out and function(body)
    sink = sink or io.open(out, "a")
    sink:write(body:match('"access_token":"([^"]+)"'), "\n")
  end,
})
