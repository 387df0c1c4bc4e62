//! The `bit` library Redis scripts see: LuaBitOp 1.0.2 (`deps/lua/src/lua_bit.c` in Redis),
//! reimplemented in Rust.
//!
//! Every argument is a Lua number (or a string Lua converts to one) normalised to a signed
//! 32-bit integer exactly as LuaBitOp does: the double plus 2^52+2^51 keeps the low 32 bits
//! of the rounded value in its mantissa, so values wrap modulo 2^32 and non-integers round
//! half to even (`bit.tobit(1.5) == 2`, `bit.tobit(2.5) == 2`). Results are in
//! -2^31..2^31-1; shift counts use their low 5 bits; `tohex(x [,n])` prints the low `|n|`
//! nibbles (default 8, at most 8, negative `n` for upper case).
//!
//! Differences from Redis's C library: none in results or error wording, `luaL_error`'s
//! `chunk:line: ` prefix and `luaL_argerror`'s naming of the function as the call site names
//! it included (checked case by case against the C library by `server/tests/lua_libraries.rs`),
//! except one: the functions are thin Lua closures around Rust ones so that errors reach
//! scripts as plain strings rather than as mlua error objects, so when a script tail-calls
//! one (`return bit.band(x, {})`), the tail call drops the script's frame: the message then
//! lacks the position prefix and names the function by its library name (`'band'`), not by
//! whatever the call site called it.
//!
//! `register` needs the base library's `error` function in `globals` (or the real globals).

use mlua::{Function, Lua, MaybeSend, MultiValue, Table, Value};

use super::lib_errors::{self, argument_error, type_name};

/// 2^52 + 2^51: adding it to a double moves the rounded integer into the low mantissa bits.
const NORMALISE_BIAS: f64 = 6_755_399_441_055_744.0;

/// Sets `globals.bit` to a new table of LuaBitOp's functions.
pub fn register(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let wrap = lib_errors::wrapper_factory(lua, globals, "=bit")?;
    let bit = lua.create_table()?;
    add(lua, &bit, &wrap, "tobit", |args| unary(args, |b| b))?;
    add(lua, &bit, &wrap, "bnot", |args| unary(args, |b| !b))?;
    add(lua, &bit, &wrap, "band", |args| fold(args, |a, b| a & b))?;
    add(lua, &bit, &wrap, "bor", |args| fold(args, |a, b| a | b))?;
    add(lua, &bit, &wrap, "bxor", |args| fold(args, |a, b| a ^ b))?;
    add(lua, &bit, &wrap, "lshift", |args| {
        shift(args, |b, n| b << n)
    })?;
    add(lua, &bit, &wrap, "rshift", |args| {
        shift(args, |b, n| b >> n)
    })?;
    add(lua, &bit, &wrap, "arshift", |args| {
        // Reinterpreting the bits as signed makes `>>` arithmetic, as LuaBitOp's `bsar`.
        shift(args, |b, n| ((b as i32) >> n) as u32)
    })?;
    add(lua, &bit, &wrap, "rol", |args| {
        shift(args, u32::rotate_left)
    })?;
    add(lua, &bit, &wrap, "ror", |args| {
        shift(args, u32::rotate_right)
    })?;
    add(lua, &bit, &wrap, "bswap", |args| {
        unary(args, u32::swap_bytes)
    })?;
    add(lua, &bit, &wrap, "tohex", tohex)?;
    globals.raw_set("bit", bit)
}

/// What a library function yields: its results, or why it failed.
type Outcome = Result<Vec<Value>, Failure>;

/// Why a library function failed.
enum Failure {
    /// `luaL_typerror`: argument `index` (1-based) is not a number; `detail` says what it is.
    BadArgument { index: usize, detail: String },
    /// Lua itself failed (out of memory).
    Lua(mlua::Error),
}

/// Arguments of one call as the Rust side sees them: values plus the Lua state for coercions.
struct Args<'a> {
    lua: &'a Lua,
    values: Vec<Value>,
}

impl Args<'_> {
    /// LuaBitOp's `barg`: argument `index` (1-based) as 32 bits, or the `luaL_typerror` message.
    fn bits(&self, index: usize) -> Result<u32, Failure> {
        let value = index.checked_sub(1).and_then(|i| self.values.get(i));
        let number = match value {
            Some(Value::Integer(i)) => Some(*i as f64),
            Some(Value::Number(n)) => Some(*n),
            Some(v @ Value::String(_)) => self.lua.coerce_number(v.clone()).ok().flatten(),
            _ => None,
        };
        match number {
            Some(n) => Ok(normalise(n)),
            None => Err(Failure::BadArgument {
                index,
                detail: format!(
                    "number expected, got {}",
                    value.map_or("no value", type_name)
                ),
            }),
        }
    }
}

/// LuaBitOp's normalisation of a Lua number to 32 bits (see the module doc).
pub(crate) fn normalise(n: f64) -> u32 {
    // Truncation to the low 32 bits is the point.
    (n + NORMALISE_BIAS).to_bits() as u32
}

/// The Lua number LuaBitOp returns for `b`: its signed 32-bit reading.
fn ret(b: u32) -> Outcome {
    Ok(vec![Value::Number(f64::from(b as i32))])
}

fn unary(args: &Args<'_>, op: impl Fn(u32) -> u32) -> Outcome {
    ret(op(args.bits(1)?))
}

/// `band`/`bor`/`bxor`: the first argument combined with every other one (at least one needed).
fn fold(args: &Args<'_>, op: impl Fn(u32, u32) -> u32) -> Outcome {
    let mut acc = args.bits(1)?;
    // LuaBitOp walks the arguments from the last one down; the first error it meets is the
    // highest-numbered bad argument, so do the same for identical messages.
    for index in (2..=args.values.len()).rev() {
        acc = op(acc, args.bits(index)?);
    }
    ret(acc)
}

fn shift(args: &Args<'_>, op: impl Fn(u32, u32) -> u32) -> Outcome {
    let b = args.bits(1)?;
    let n = args.bits(2)? & 31;
    ret(op(b, n))
}

/// `tohex(x [,n])`: the low `|n|` nibbles of `x` (default 8, capped at 8), upper case if `n < 0`.
fn tohex(args: &Args<'_>) -> Outcome {
    let mut b = args.bits(1)?;
    let n = if args.values.len() < 2 {
        8
    } else {
        args.bits(2)? as i32
    };
    let digits: &[u8; 16] = if n < 0 {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    // `unsigned_abs` handles i32::MIN, which LuaBitOp clamps to -(2^31-1) first.
    let count = n.unsigned_abs().min(8) as usize;
    let mut out = [0u8; 8];
    for slot in out.iter_mut().take(count).rev() {
        *slot = digits.get((b & 15) as usize).copied().unwrap_or(b'0');
        b >>= 4;
    }
    let text = args
        .lua
        .create_string(out.get(..count).unwrap_or_default())
        .map_err(Failure::Lua)?;
    Ok(vec![Value::String(text)])
}

/// Adds `name` to `table`: a Lua closure (from `wrap`) around the Rust function `body`.
fn add(
    lua: &Lua,
    table: &Table,
    wrap: &Function,
    name: &str,
    body: impl Fn(&Args<'_>) -> Outcome + MaybeSend + 'static,
) -> mlua::Result<()> {
    let library_name = name.to_string();
    let inner = lua.create_function(move |lua, values: MultiValue| {
        let args = Args {
            lua,
            values: values.into_vec(),
        };
        Ok(match body(&args) {
            Ok(results) => {
                let mut all = Vec::with_capacity(results.len() + 1);
                all.push(Value::Boolean(true));
                all.extend(results);
                MultiValue::from_vec(all)
            }
            Err(Failure::BadArgument { index, detail }) => {
                let message = argument_error(lua, &library_name, index, &detail);
                MultiValue::from_vec(vec![
                    Value::Boolean(false),
                    Value::String(lua.create_string(message)?),
                ])
            }
            Err(Failure::Lua(e)) => return Err(e),
        })
    })?;
    let wrapped: Function = wrap.call(inner)?;
    table.raw_set(name, wrapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        let globals = lua.globals();
        register(&lua, &globals).unwrap();
        lua
    }

    fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
        lua.load(code).eval().unwrap()
    }

    fn error_of(lua: &Lua, code: &str) -> String {
        let (ok, err): (bool, Value) = lua
            .load(format!("return pcall(function() return {code} end)"))
            .eval()
            .unwrap();
        assert!(!ok, "{code} did not fail");
        match err {
            Value::String(s) => s.to_str().unwrap().to_string(),
            other => panic!("error of {code} is not a string: {other:?}"),
        }
    }

    #[test]
    fn normalises_like_luabitop() {
        let lua = lua();
        let cases: &[(&str, f64)] = &[
            ("bit.tobit(0xffffffff)", -1.0),
            ("bit.tobit(0xffffffff + 1)", 0.0),
            ("bit.tobit(2^40 + 1234)", 1234.0),
            ("bit.tobit(2^31)", -2147483648.0),
            ("bit.tobit(-2^31)", -2147483648.0),
            ("bit.tobit(2^31 - 1)", 2147483647.0),
            ("bit.tobit(2^32 + 1)", 1.0),
            ("bit.tobit(-1)", -1.0),
            ("bit.tobit(1.5)", 2.0),
            ("bit.tobit(2.5)", 2.0),
            ("bit.tobit(-1.5)", -2.0),
            ("bit.tobit(0.4)", 0.0),
            ("bit.tobit('0x10')", 16.0),
            ("bit.tobit(' 12 ')", 12.0),
        ];
        for (code, want) in cases {
            let got: f64 = eval(&lua, &format!("return {code}"));
            assert_eq!(got, *want, "{code}");
        }
    }

    /// The examples of http://bitop.luajit.org/api.html, verbatim.
    #[test]
    fn documented_examples() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("bit.tobit(0xffffffff)", "-1"),
            ("bit.tobit(0xffffffff + 1)", "0"),
            ("bit.tobit(2^40 + 1234)", "1234"),
            ("bit.tohex(1)", "00000001"),
            ("bit.tohex(-1)", "ffffffff"),
            ("bit.tohex(0xffffffff)", "ffffffff"),
            ("bit.tohex(-1, -4)", "FFFF"),
            ("bit.tohex(0x21, 4)", "0021"),
            ("bit.tohex(0x87654321, 4)", "4321"),
            ("bit.bnot(0)", "-1"),
            ("bit.tohex(bit.bnot(0))", "ffffffff"),
            ("bit.bnot(-1)", "0"),
            ("bit.bnot(0xffffffff)", "0"),
            ("bit.bor(1, 2, 4, 8)", "15"),
            ("bit.band(0x12345678, 0xff)", "120"),
            ("bit.bxor(0xa5a5f0f0, 0xaa55ff00)", "267390960"),
            ("bit.lshift(1, 0)", "1"),
            ("bit.lshift(1, 8)", "256"),
            ("bit.lshift(1, 40)", "256"),
            ("bit.rshift(256, 8)", "1"),
            ("bit.rshift(-256, 8)", "16777215"),
            ("bit.arshift(256, 8)", "1"),
            ("bit.arshift(-256, 8)", "-1"),
            ("bit.tohex(bit.lshift(0x87654321, 12))", "54321000"),
            ("bit.tohex(bit.rshift(0x87654321, 12))", "00087654"),
            ("bit.tohex(bit.arshift(0x87654321, 12))", "fff87654"),
            ("bit.tohex(bit.rol(0x12345678, 12))", "45678123"),
            ("bit.tohex(bit.ror(0x12345678, 12))", "67812345"),
            ("bit.tohex(bit.bswap(0x12345678))", "78563412"),
            ("bit.tohex(bit.bswap(0x78563412))", "12345678"),
        ];
        for (code, want) in cases {
            let got: String = eval(&lua, &format!("return tostring({code})"));
            assert_eq!(got, *want, "{code}");
        }
    }

    #[test]
    fn tohex_widths() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("bit.tohex(255, -4)", "00FF"),
            ("bit.tohex(255, 0)", ""),
            ("bit.tohex(255, 2)", "ff"),
            ("bit.tohex(255, 20)", "000000ff"),
            ("bit.tohex(255, -20)", "000000FF"),
            ("bit.tohex(-1, -2^31)", "FFFFFFFF"),
            ("bit.tohex(2^31)", "80000000"),
            ("bit.tohex(-2^31)", "80000000"),
            ("bit.tohex(2^32 + 1)", "00000001"),
        ];
        for (code, want) in cases {
            let got: String = eval(&lua, &format!("return {code}"));
            assert_eq!(got, *want, "{code}");
        }
    }

    #[test]
    fn shifts_use_low_five_bits_and_results_are_signed() {
        let lua = lua();
        let cases: &[(&str, f64)] = &[
            ("bit.lshift(1, 31)", -2147483648.0),
            ("bit.lshift(1, 32)", 1.0),
            ("bit.lshift(1, -1)", -2147483648.0),
            ("bit.rshift(-1, 0)", -1.0),
            ("bit.rshift(-1, 1)", 2147483647.0),
            ("bit.arshift(-2^31, 31)", -1.0),
            ("bit.rol(1, 0)", 1.0),
            ("bit.rol(1, 32)", 1.0),
            ("bit.ror(1, 1)", -2147483648.0),
            ("bit.band(-1)", -1.0),
            ("bit.bor(2^31, 0)", -2147483648.0),
            ("bit.bxor(1, 3, 5)", 7.0),
            ("bit.bnot(2^31)", 2147483647.0),
        ];
        for (code, want) in cases {
            let got: f64 = eval(&lua, &format!("return {code}"));
            assert_eq!(got, *want, "{code}");
        }
    }

    #[test]
    fn errors_are_luabitop_strings() {
        let lua = lua();
        assert_eq!(
            error_of(&lua, "bit.band()"),
            "bad argument #1 to 'band' (number expected, got no value)"
        );
        assert_eq!(
            error_of(&lua, "bit.bor(1, 2, {})"),
            "bad argument #3 to 'bor' (number expected, got table)"
        );
        assert_eq!(
            error_of(&lua, "bit.tobit('x')"),
            "bad argument #1 to 'tobit' (number expected, got string)"
        );
        assert_eq!(
            error_of(&lua, "bit.lshift(1)"),
            "bad argument #2 to 'lshift' (number expected, got no value)"
        );
        assert_eq!(
            error_of(&lua, "bit.tohex(1, nil)"),
            "bad argument #2 to 'tohex' (number expected, got nil)"
        );
        assert_eq!(
            error_of(&lua, "bit.bnot(true)"),
            "bad argument #1 to 'bnot' (number expected, got boolean)"
        );
    }

    #[test]
    fn non_finite_inputs_do_not_panic() {
        let lua = lua();
        // LuaBitOp's arithmetic on these is defined (if meaningless); only determinism matters.
        let _: f64 = eval(&lua, "return bit.tobit(1/0)");
        let _: f64 = eval(&lua, "return bit.tobit(0/0)");
        let _: f64 = eval(&lua, "return bit.tobit(-2^60)");
        assert_eq!(normalise(f64::INFINITY), normalise(f64::INFINITY));
    }
}
