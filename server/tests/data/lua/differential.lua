-- Differential cases for cjson and bit: each line of output is one case's result.
-- tests/data/differential.expected is this file's output under Redis's own C libraries
-- (deps/lua/src: Lua 5.1.5, lua_cjson.c, lua_bit.c); tests/differential.rs runs it on Rust.
local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    return string.format("%.17g", v)
  elseif t == "string" then return string.format("%q", v)
  elseif t == "userdata" then return v == cjson.null and "NULL" or "userdata"
  elseif t == "table" then
    if depth > 20 then return "{...}" end
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

local cases = {
  -- cjson.encode
  "cjson.encode(1)", "cjson.encode(-1.5)", "cjson.encode(0.1)", "cjson.encode(1e300)",
  "cjson.encode(1/3)", "cjson.encode(-0.0)", "cjson.encode(2^53)", "cjson.encode(123456789012345678)",
  "cjson.encode(1e-5)", "cjson.encode(1e-4)", "cjson.encode(5e-324)", "cjson.encode(1.7976931348623157e308)",
  "cjson.encode(99999999999999.5)", "cjson.encode(0.000123456789012345)",
  "cjson.encode(true)", "cjson.encode(false)", "cjson.encode(nil)", "cjson.encode(cjson.null)",
  "cjson.encode('a/b\"c\\\\d\\b\\f\\n\\r\\t\\0\\1\\31\\127\\11 \\255')",
  "cjson.encode({})", "cjson.encode({1,2,3})", "cjson.encode({1,nil,3})", "cjson.encode({[3]=1})",
  "cjson.encode({[10]=1})", "cjson.encode({[11]=1})", "cjson.encode({1,2,3,4,5,6,[12]=12})",
  "cjson.encode({1,2,[13]=1})", "cjson.encode({[0]=1})", "cjson.encode({[-1]=1})", "cjson.encode({[1.5]=1})",
  "cjson.encode({a=1})", "cjson.encode({a={b={c={}}}})", "cjson.encode({[{}]=1})", "cjson.encode({[true]=1})",
  "cjson.encode(print)", "cjson.encode({f=print})", "cjson.encode(coroutine.create(function() end))",
  "cjson.encode(newproxy())", "cjson.encode(0/0)", "cjson.encode(1/0)", "cjson.encode({-1/0})",
  "cjson.encode({a=1,[1/0]=1})", "cjson.encode()", "cjson.encode(1,2)", "cjson.encode({[2^40]=1})",
  "cjson.encode({[1/0]=1})", "cjson.encode({1, [1.5]=2})", "cjson.encode({['1']=1})",
  "cjson.encode((function() local t = {} t.a = t return t end)())",
  "cjson.encode((function() local t = {} for i = 2, 1000 do t = {t} end return t end)()) and 'deep1000'",
  "cjson.encode((function() local t = {} for i = 2, 1001 do t = {t} end return t end)())",
  -- cjson.decode
  "cjson.decode('[1,2.5,-3e2,true,false,null,\"x\"]')", "cjson.decode('{\"a\":{\"b\":[]},\"c\":{}}')",
  "cjson.decode(' \\t\\r\\n 42 ')", "cjson.decode(12)", "cjson.decode('null')", "cjson.decode('[1e400,-0]')",
  "cjson.decode('\"\\\\\"\\\\\\\\\\\\/\\\\b\\\\f\\\\n\\\\r\\\\t\\\\u0041\\\\u00e9\\\\u20ac\\\\ud83d\\\\ude00\\\\u0000\"')",
  "cjson.decode('\"\\1\\255\"')", "cjson.decode('\"\\\\uD83D\\\\uDE00\"')",
  "cjson.decode('')", "cjson.decode('x')", "cjson.decode('nul')", "cjson.decode('tru')", "cjson.decode('[1,]')",
  "cjson.decode('[1 2]')", "cjson.decode('{\"a\" 1}')", "cjson.decode('{1: 2}')", "cjson.decode('{\"a\": 1,}')",
  "cjson.decode('{\"a\": 1 \"b\"}')", "cjson.decode('[1] 2')", "cjson.decode('[1')", "cjson.decode('{')",
  "cjson.decode('{\"a\"')", "cjson.decode('\"abc')", "cjson.decode('\"a\\\\x\"')", "cjson.decode('\"a\\\\')",
  "cjson.decode('\"\\\\u12\"')", "cjson.decode('\"\\\\udc00\"')", "cjson.decode('\"\\\\ud800x\"')",
  "cjson.decode('\"\\\\ud800\\\\u0041\"')", "cjson.decode('\"\\\\ud800\\\\udbff\"')", "cjson.decode('\"\\\\uzzzz\"')",
  "cjson.decode('-')", "cjson.decode('+')", "cjson.decode('1e')", "cjson.decode('1e+')", "cjson.decode('.5')",
  "cjson.decode('- 1')", "cjson.decode('\\0 1')", "cjson.decode('1\\0')", "cjson.decode('[7]\\0garbage')",
  "cjson.decode('0x10')", "cjson.decode('-0x10')", "cjson.decode('0x1p4')", "cjson.decode('0x.8')",
  "cjson.decode('0xg')", "cjson.decode('0x')", "cjson.decode('+5')", "cjson.decode('007')", "cjson.decode('1.')",
  "cjson.decode('-.5')", "cjson.decode('1E+2')", "cjson.decode('Infinity')", "cjson.decode('-inf')",
  "cjson.decode('infinit')", "cjson.decode('NaN')", "cjson.decode('[nan(123)]')", "cjson.decode('[nan(12]')",
  "cjson.decode('[-nan]')", "cjson.decode('Nope')", "cjson.decode('inn')", "cjson.decode('+x')",
  "cjson.decode('0x123456789abcdef123')", "cjson.decode('0x1ffffffffffffe800')",
  "cjson.decode('0x1ffffffffffffe801')", "cjson.decode('0x1ffffffffffffe8000000001')",
  "cjson.decode('0x1.ffffffffffffe800000001p0')", "cjson.decode('0x20000000000001001')",
  "cjson.decode('0x.0000000000000000000001')", "cjson.decode('0x1p-1074')", "cjson.decode('0x1.8p-1075')",
  "cjson.decode('0x1p1024')", "cjson.decode('0xffffffffffffffffffffp-10')", "cjson.decode('0x1P+3')",
  "cjson.decode('0x1p')", "cjson.decode('0x1p+')", "cjson.decode('0x1.')", "cjson.decode('0x.')",
  "cjson.decode('1.e5')", "cjson.decode('-1.e+5')", "cjson.decode('1e-400')", "cjson.decode('2.4703282292062328e-324')",
  "cjson.decode('2.4703282292062327e-324')", "cjson.decode('1.7976931348623158e308')",
  "cjson.decode('1.7976931348623159e308')", "cjson.decode('1e0000000000000000000000001')",
  "cjson.decode('1e-99999999999999999999')", "cjson.decode('123.' .. string.rep('0', 1000) .. '1')",
  "cjson.decode('0.' .. string.rep('0', 400) .. '1e400')", "cjson.decode('9007199254740993')",
  "cjson.decode('-9007199254740993.0000000000000000001')", "cjson.decode('1_000')", "cjson.decode('1e5.5')",
  "cjson.decode('0e')", "cjson.decode('-0e-0')", "cjson.decode('01.5')", "cjson.decode('0.5.5')",
  "cjson.decode('1.5e3')", "cjson.decode('123456789012345678901234567890')", "cjson.decode('4.9e-324')",
  "cjson.decode('[true,false]')", "cjson.decode('truefalse')", "cjson.decode('[1]]')",
  "cjson.decode()", "cjson.decode({})", "cjson.decode(nil)", "cjson.decode('a', 'b')",
  "cjson.decode(string.rep('[', 1000) .. string.rep(']', 1000)) and 'deep1000'",
  "cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001))",
  "cjson.decode(string.rep('{\"a\":', 1001))", "cjson.decode('{\"a\":1,\"a\":2}')",
  "cjson.decode('{\"\":0}')", "cjson.decode('[[],[[]],{}]')",
  -- configuration
  "cjson.encode_sparse_array()", "cjson.encode_max_depth()", "cjson.decode_max_depth()",
  "cjson.encode_number_precision()", "cjson.encode_keep_buffer()", "cjson.encode_invalid_numbers()",
  "cjson.decode_invalid_numbers()", "cjson.encode_max_depth(1, 2)", "cjson.encode_max_depth(0)",
  "cjson.encode_max_depth('x')", "cjson.decode_max_depth({})", "cjson.encode_number_precision(15)",
  "cjson.encode_sparse_array(true, 1, -1)", "cjson.encode_sparse_array()", "cjson.encode_sparse_array(false, 2, 10)",
  "cjson.encode_sparse_array('yes')", "cjson.encode_sparse_array(1)", "cjson.encode_keep_buffer('yes')",
  "cjson.encode_invalid_numbers({})", "cjson.decode_invalid_numbers('null')", "cjson.encode_sparse_array(1, 2, 3, 4)",
  "cjson.encode_max_depth(2^32 + 5)", "cjson.encode_max_depth(1e300)", "cjson.encode_max_depth(0/0)",
  "cjson.encode_max_depth(7.9)", "cjson.encode_max_depth(-2^32 + 3)", "cjson.encode_max_depth(2^63)",
  "cjson.encode_max_depth(-2^63)", "cjson.encode_number_precision('0x5')", "cjson.encode_max_depth(1000)",
  "cjson.encode_number_precision(3)", "cjson.encode({3.14159, 1234, 0.000012345})", "cjson.encode_number_precision(14)",
  "cjson.encode_invalid_numbers('null')", "cjson.encode({1/0, 0/0})", "cjson.encode_invalid_numbers(true)",
  "cjson.encode({1/0, -1/0})", "cjson.encode({[1/0]=1, a=2}) and 'key-inf'", "cjson.encode_invalid_numbers('off')",
  "cjson.encode_sparse_array(true)", "cjson.encode({[11]=1})", "cjson.encode_sparse_array(false, 0)",
  "cjson.encode({[12]=1})", "cjson.encode_sparse_array(false, 2, 10)",
  "cjson.encode_max_depth(3)", "cjson.encode({{{}}})", "cjson.encode({{{{}}}})", "cjson.encode_max_depth(1000)",
  "cjson.decode_max_depth(2)", "cjson.decode('[[1]]')", "cjson.decode('[[[1]]]')", "cjson.decode('{\"a\":{\"b\":{}}}')",
  "cjson.decode_max_depth(1000)", "cjson.decode_invalid_numbers(false)", "cjson.decode('0x10')",
  "cjson.decode('+5')", "cjson.decode('007')", "cjson.decode('NaN')", "cjson.decode('-Infinity')",
  "cjson.decode('inf')", "cjson.decode('-0.5e1')", "cjson.decode('0')", "cjson.decode('-0')",
  "cjson.decode_invalid_numbers(true)",
  "cjson.decode_max_depth(100000)", "cjson.decode(string.rep('[', 100000))",
  "cjson.decode(string.rep('{\"\":', 100000))", "cjson.decode(string.rep('[{\"a\":', 5000))",
  "cjson.decode(string.rep('[', 7998) .. string.rep(']', 7998)) and 'deep7998'",
  "cjson.decode(string.rep('{\"a\":[', 2666))", "cjson.decode(string.rep('{\"a\":[', 2667))",
  "cjson.decode_max_depth(1000)", "cjson.encode_max_depth(100000)",
  "cjson.encode((function() local t = {} t[1] = t return t end)())",
  "cjson.encode((function() local t = {} t.k = t return t end)())",
  "cjson.encode((function() local t = {} t[1] = {k = t} return t end)())",
  "cjson.encode((function() local t = {} for i = 2, 7997 do t = {t} end return t end)()) and 'deep7997'",
  "cjson.encode_max_depth(1000)", "cjson.encode_keep_buffer(false)", "cjson.encode({1})",
  "cjson.encode_keep_buffer(true)", "cjson._NAME", "cjson._VERSION", "type(cjson.null)",
  "cjson.null == cjson.decode('null')",
  -- bit
  "bit.tobit(0xffffffff)", "bit.tobit(0xffffffff + 1)", "bit.tobit(2^40 + 1234)", "bit.tobit(2^31)",
  "bit.tobit(-2^31)", "bit.tobit(2^31 - 1)", "bit.tobit(2^32 + 1)", "bit.tobit(-1)", "bit.tobit(1.5)",
  "bit.tobit(2.5)", "bit.tobit(-1.5)", "bit.tobit(0.4)", "bit.tobit(0.5)", "bit.tobit('0x10')", "bit.tobit(' 12 ')",
  "bit.tobit(1/0)", "bit.tobit(-1/0)", "bit.tobit(0/0)", "bit.tobit(2^52)", "bit.tobit(2^53 + 3)", "bit.tobit(-2^60)",
  "bit.tobit(1e300)", "bit.tohex(1)", "bit.tohex(-1)", "bit.tohex(0xffffffff)", "bit.tohex(-1, -4)",
  "bit.tohex(0x21, 4)", "bit.tohex(0x87654321, 4)", "bit.tohex(255, -4)", "bit.tohex(255, 0)", "bit.tohex(255, 20)",
  "bit.tohex(255, -20)", "bit.tohex(-1, -2^31)", "bit.tohex(2^31)", "bit.tohex(1, 2^32 + 3)", "bit.tohex(1, 1.5)",
  "bit.bnot(0)", "bit.bnot(-1)", "bit.bnot(2^31)", "bit.bor(1, 2, 4, 8)", "bit.band(0x12345678, 0xff)",
  "bit.bxor(0xa5a5f0f0, 0xaa55ff00)", "bit.band(-1)", "bit.bxor(1, 3, 5)", "bit.lshift(1, 0)", "bit.lshift(1, 8)",
  "bit.lshift(1, 40)", "bit.lshift(1, 31)", "bit.lshift(1, -1)", "bit.rshift(256, 8)", "bit.rshift(-256, 8)",
  "bit.arshift(256, 8)", "bit.arshift(-256, 8)", "bit.arshift(-2^31, 31)", "bit.lshift(0x87654321, 12)",
  "bit.rshift(0x87654321, 12)", "bit.arshift(0x87654321, 12)", "bit.rol(0x12345678, 12)", "bit.ror(0x12345678, 12)",
  "bit.rol(1, 0)", "bit.rol(1, 32)", "bit.ror(1, 1)", "bit.ror(1, 0)", "bit.bswap(0x12345678)", "bit.bswap(-1)",
  "bit.band()", "bit.bor(1, 2, {})", "bit.bor(1, {}, {})", "bit.tobit('x')", "bit.lshift(1)", "bit.tohex(1, nil)",
  "bit.bnot(true)", "bit.band(1, nil)", "bit.tobit(cjson.null)", "bit.tobit('')",
  -- how "bad argument" messages name the function: as the call site does, '?' from C
  "select(2, pcall(bit.band, 1, {}))", "select(2, pcall(cjson.decode))",
  "select(2, pcall(cjson.encode_max_depth, 0))", "select(2, pcall(bit.tohex, 1, nil))",
  "(function() local f = bit.band local r = f(1, {}) return r end)()",
  "(function() local t = {g = cjson.decode} local r = t.g() return r end)()",
  "bit:band(1)", "bit:band({})", "cjson:decode('x')", "cjson:encode()", "cjson:encode_max_depth(2, 3)",
}

for _, code in ipairs(cases) do
  -- Not `return <code>`: a tail call would hide the caller's position from error messages.
  local f = assert(loadstring("local results = {" .. code .. "}\nreturn results"))
  local ok, results = pcall(f)
  local parts = {}
  if ok then
    for i = 1, table.maxn(results) do parts[#parts + 1] = show(results[i]) end
  else
    parts[1] = show(results)
  end
  print(code .. " => " .. (ok and "ok " or "error ") .. table.concat(parts, " "))
end
