-- RFC 7009 revocation of fresh tokens: every request revokes the next token of TOKENS_FILE
-- (issued just before, never revoked). A request past the end of the file would take the
-- already-revoked path, so it counts as an error.
-- Env: SCENARIO, REVOKE_URL_PATH, TOKENS_FILE, CLIENT_ID, CLIENT_SECRET.
local lib = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") .. "lib.lua")
local tokens = {}
for line in io.lines(lib.env("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local i = 0
lib.scenario({
  path = lib.env("REVOKE_URL_PATH"),
  next_request = function()
    i = i + 1
    local t = tokens[i]
    return t and ("token=" .. lib.form(t) .. "&token_type_hint=access_token") or nil
  end,
  spent_body = "token=" .. lib.form(tokens[1] or "none") .. "&token_type_hint=access_token",
})
