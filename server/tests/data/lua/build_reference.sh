#!/bin/sh
# Regenerates differential.expected and fuzz.expected with Redis's own Lua: deps/lua/src of
# a redis/redis checkout (Lua 5.1.5 as Redis patches it, lua_cjson.c, lua_bit.c), built with
# the flags Redis's deps/Makefile uses.
# usage: build_reference.sh <redis git dir> <work dir>
# e.g.   build_reference.sh /work/.mirror/redis+redis/repo /tmp/reflua
set -eu
redis=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/src"
for f in $(git --git-dir="$redis" ls-tree --name-only HEAD deps/lua/src/); do
  git --git-dir="$redis" show "HEAD:$f" > "$work/src/$(basename "$f")"
done
# Interpreters and the libraries Redis loads besides cjson and bit are not needed.
rm -f "$work/src/lua.c" "$work/src/luac.c" "$work/src/print.c" "$work/src/Makefile" \
  "$work/src/lua_cmsgpack.c" "$work/src/lua_struct.c"
sed -i 's|#include "../../../src/solarisfixes.h"||' "$work/src/lua_cjson.c"
cat > "$work/src/main.c" <<'C'
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include <stdio.h>
int luaopen_cjson(lua_State *L);
int luaopen_bit(lua_State *L);
int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  (void)argc;
  luaL_openlibs(L);
  luaopen_cjson(L); lua_pop(L, 1);
  luaopen_bit(L); lua_pop(L, 1);
  if (luaL_dofile(L, argv[1])) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  return 0;
}
C
gcc -O1 -w -DLUA_ANSI -DENABLE_CJSON_GLOBAL -DREDIS_STATIC='' -DLUA_USE_MKSTEMP \
  -o "$work/reflua" "$work"/src/*.c -lm
cd "$here"
"$work/reflua" differential.lua > differential.expected
"$work/reflua" fuzz.lua > fuzz.expected
