-- RFC 7662 introspection of one live token; a success says "active":true (an unknown token
-- also gets 200, with "active":false, and must not pass).
-- Env: SCENARIO, INTROSPECT_URL_PATH, TOKEN, CLIENT_ID, CLIENT_SECRET.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
lib.scenario({
  path = lib.env("INTROSPECT_URL_PATH"),
  body = "token=" .. lib.form(lib.env("TOKEN")) .. "&token_type_hint=access_token",
  check = function(body) return body:gsub("%s", ""):find('"active":true', 1, true) ~= nil end,
})
