-- Randomised differential cases for cjson and bit, from a fixed seed: fuzz.expected is this
-- file's output under Redis's own C libraries; tests/differential.rs runs it on the Rust ones.
local seed = 20261206
local function rand(n) -- 1..n, Park-Miller (exact in doubles)
  seed = (seed * 16807) % 2147483647
  return seed % n + 1
end
local function pick(list) return list[rand(#list)] end

local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    return string.format("%.17g", v)
  elseif t == "string" then return string.format("%q", v)
  elseif t == "userdata" then return v == cjson.null and "NULL" or "userdata"
  elseif t == "table" then
    if depth > 30 then return "{...}" end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = show(k, depth + 1) .. "=" .. show(v[k], depth + 1) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local function report(label, ok, ...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = show((select(i, ...))) end
  print(label .. " => " .. (ok and "ok " or "error ") .. table.concat(parts, " "))
end

-- Decoding: random fragments, and valid documents with one byte changed.
local fragments = {
  "{", "}", "[", "]", ",", ":", " ", "\t", "\n", '"a"', '"\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"',
  '"\\x"', '"', "1", "-", "0", ".5", "e3", "E-2", "1e400", "0x1F", "0x", "+", "true", "false", "null",
  "nul", "nan", "-inf", "Infinity", "007", '"\\\\"', "\0", "\255", '"abc\\u0041"', "tru", "/", '"a/b"',
  "12345678901234567890", "-0", "4.9e-324", "p3", "0x1.8p1", '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\u"',
  '"\\u12', "\\", "{}", "[]", '{"k":', '"k"', "nan(1)", "i", "N", "x",
}
for i = 1, 2500 do
  local parts = {}
  for j = 1, rand(10) do parts[j] = pick(fragments) end
  local text = table.concat(parts)
  report("decode " .. string.format("%q", text), pcall(cjson.decode, text))
end

local function random_value(depth)
  local kind = rand(depth > 3 and 6 or 10)
  if kind == 1 then return pick({0, 1, -1, 0.5, 1/3, 1e300, -1e-300, 2^53, 123456789, 1e15, 0.1, -0.0, 7/3 * 1e10})
  elseif kind == 2 then
    local bytes = {}
    for j = 1, rand(6) - 1 do bytes[j] = string.char(pick({0, 1, 8, 9, 10, 12, 13, 31, 32, 34, 47, 65, 92, 97, 127, 128, 195, 169, 255})) end
    return table.concat(bytes)
  elseif kind == 3 then return rand(2) == 1
  elseif kind == 4 then return cjson.null
  elseif kind == 5 then return rand(1000) - 500
  elseif kind == 6 then return pick({"id", "name", "", "a/b"})
  elseif kind == 7 then -- array, maybe with holes
    local t = {}
    for j = 1, rand(5) - 1 do if rand(5) > 1 then t[j] = random_value(depth + 1) end end
    return t
  elseif kind == 8 then -- object
    local t = {}
    for j = 1, rand(4) - 1 do t[pick({"a", "b", "c", "dd", "e/f", "\1", ""})] = random_value(depth + 1) end
    return t
  elseif kind == 9 then -- sparse or odd keys
    local t = {}
    for j = 1, rand(3) do t[pick({1, 2, 3, 5, 11, 12, 20, 100, 0, -1, 1.5, 2^31, 2^40})] = random_value(depth + 1) end
    return t
  else -- mixed
    local t = { random_value(depth + 1) }
    t[pick({"x", 2, 3.25})] = random_value(depth + 1)
    return t
  end
end

local sparse = { {false, 2, 10}, {true, 2, 10}, {false, 0, 0}, {false, 1, 1}, {true, 3, 2} }
local invalid = { "off", "on", "null" }
for round = 1, 6 do
  local s = pick(sparse)
  report("config", pcall(cjson.encode_sparse_array, s[1], s[2], s[3]))
  report("config", pcall(cjson.encode_number_precision, rand(14)))
  report("config", pcall(cjson.encode_invalid_numbers, pick(invalid)))
  for i = 1, 300 do
    local v = random_value(0)
    if rand(20) == 1 then v = { v, 0/0 } elseif rand(20) == 1 then v = { [1/0] = v, k = 1 } end
    local ok, text = pcall(cjson.encode, v)
    report("encode", ok, text)
    if ok then
      report("roundtrip", pcall(cjson.decode, text))
      -- The same text with one byte replaced by a random fragment.
      local at = rand(#text)
      local mutated = text:sub(1, at - 1) .. pick(fragments) .. text:sub(at + 1)
      report("mutated " .. string.format("%q", mutated), pcall(cjson.decode, mutated))
    end
  end
end

-- bit: random operands of every kind LuaBitOp normalises.
local numbers = { 0, 1, -1, 2^31, -2^31, 2^32, 2^32 + 1, 2^31 - 1, 0.5, 1.5, 2.5, -0.5, -1.5, 2^52, 2^53, 2^60,
  -2^60, 1e300, 0xdeadbeef, 0x12345678, 255, 31, 32, 33, -33, "0x10", " 7 ", "x", false }
local ops = { "tobit", "bnot", "bswap", "band", "bor", "bxor", "lshift", "rshift", "arshift", "rol", "ror", "tohex" }
for i = 1, 1500 do
  local op = pick(ops)
  local a, b, c = pick(numbers), pick(numbers), pick(numbers)
  if type(a) == "number" and rand(3) == 1 then a = a + (rand(1000) - 500) / 7 end
  if op == "tohex" then b = pick({ 0, 1, 4, 8, 9, -1, -4, -8, -9, 2^31, 2.5 }) end
  report(string.format("bit.%s(%s, %s, %s)", op, show(a), show(b), show(c)), pcall(bit[op], a, b, c))
end
