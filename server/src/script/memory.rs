//! The interpreter's memory limit, lifted while the Rust side builds values ([`Unlimited`]).

use mlua::Lua;

use super::LUA_MEMORY_LIMIT;

/// While alive, the interpreter's memory limit is lifted, for the Rust side's own work: KEYS
/// and ARGV, a command's reply as Lua values, the script's result. With a limit set, mlua runs
/// each table or string it creates in a protected call of its own (a closure allocated, a
/// `lua_pcall`), since the allocation may fail; with none, it creates them directly, about
/// half of an EVALSHA's instructions. Lua code never runs while one is alive, so a script
/// still meets the limit at its first allocation; what the Rust side adds in between is
/// bounded by a command's reply and the request's size.
pub(super) struct Unlimited<'a>(&'a Lua);

impl<'a> Unlimited<'a> {
    pub fn new(lua: &'a Lua) -> Unlimited<'a> {
        // Only fails without mlua's allocator, which `Lua::new_with` always installs.
        let _ = lua.set_memory_limit(0);
        Unlimited(lua)
    }
}

impl Drop for Unlimited<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_memory_limit(LUA_MEMORY_LIMIT);
    }
}
