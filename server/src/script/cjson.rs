//! The `cjson` library Redis scripts see: lua-cjson 2.1 as patched by Redis
//! (`deps/lua/src/lua_cjson.c`), reimplemented in Rust.
//!
//! Follows Redis's library in: the table-to-array rules (keys exactly 1..n, the sparse-array
//! check with defaults `encode_sparse_array(false, 2, 10)`), `%.14g` numbers, lua-cjson's
//! string escapes (`/` as `\/`, control characters and DEL as `\u00XX`, other bytes passed
//! through untouched, invalid UTF-8 included), `cjson.null` (a NULL lightuserdata), the
//! decoder's leniency (numbers as C's `strtod` reads them: hex, `inf`, `nan`, leading `+` or
//! zeros while `decode_invalid_numbers` is on, as it is by default; a NUL byte ends the text),
//! the nesting limits (1000 by default, and where lua-cjson's C recursion runs out of Lua C
//! stack, `LUAI_MAXCSTACK`: about 8000 levels of arrays or 4000 of objects when the limit is
//! raised; reproduced from a count of the slots C would hold) and every error message, word
//! for word, with `luaL_error`'s `chunk:line: ` prefix and `luaL_argerror`'s naming of the
//! function as the call site names it. The configuration functions take and return the
//! values lua-cjson does; their settings live in the Lua state (as in Redis, where they live
//! in the module's upvalue until the state is reset). `server/tests/lua_libraries.rs` compares ~340
//! hand-written and ~9600 random cases with Redis's C library.
//!
//! Where it differs:
//! - Both directions work with an explicit stack, not recursion, and outer tables wait in a
//!   Lua table rather than as mlua handles (mlua's handle stack is small on Lua 5.1).
//! - `encode` refuses output beyond [`MAX_ENCODED_BYTES`] (Redis's `proto-max-bulk-len`
//!   default): a self-referencing table is otherwise an exponential output a script kill
//!   cannot interrupt, and the buffer lives outside Lua's memory accounting.
//! - `encode_keep_buffer` is accepted and reported but changes nothing (no shared buffer).
//! - No `cjson.new` (a fresh module table with its own settings).
//! - A hexadecimal number (leniency: JSON has none) whose value is subnormal may round in
//!   the last bit differently from glibc's `strtod` (it is rounded twice here).
//! - The functions are thin Lua closures around Rust ones, so that errors reach scripts as
//!   plain strings as `luaL_error` raises them (not as mlua error objects). When a script
//!   tail-calls one (`return cjson.encode(f)`), the tail call drops the script's frame, so
//!   the error lacks the `chunk:line: ` prefix Redis would give it, and "bad argument"
//!   messages name the function by its library name rather than as the call site did.
//!
//! `register` needs the base library's `error` and `next` functions in `globals` (or in the
//! real globals).

use mlua::{Function, LightUserData, Lua, MaybeSend, MultiValue, Table, Value};

use super::lib_errors::{self, argument_error, caller_position, type_name};

/// Largest text `encode` produces: Redis's default `proto-max-bulk-len`, 512 MB.
pub const MAX_ENCODED_BYTES: usize = 512 * 1024 * 1024;

/// lua-cjson's configuration; one per Lua state (stored as its app data).
#[derive(Debug, Clone, Copy)]
struct Config {
    /// Encode excessively sparse arrays as objects instead of failing.
    sparse_convert: bool,
    /// 0: never sparse; otherwise an array is sparse when `max > items * ratio` ...
    sparse_ratio: i32,
    /// ... and `max > safe`.
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    /// 0: error, 1: `inf`/`nan` literals, 2: `null`.
    encode_invalid_numbers: u8,
    decode_invalid_numbers: bool,
    /// Accepted and reported only; this implementation has no shared buffer.
    encode_keep_buffer: bool,
    /// Significant digits of encoded numbers (`%.<n>g`), 1..=14.
    encode_number_precision: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            encode_keep_buffer: true,
            encode_number_precision: 14,
        }
    }
}

/// Sets `globals.cjson` to a new table of lua-cjson's functions and `cjson.null`, and resets
/// this Lua state's cjson configuration to lua-cjson's defaults.
pub fn register(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let wrap = lib_errors::wrapper_factory(lua, globals, "=cjson")?;
    let next = lib_errors::base_function(lua, globals, "next")?;
    lua.set_app_data(Config::default());

    let cjson = lua.create_table()?;
    let encode = move |lua: &Lua, args: &[Value]| encode(lua, args, &next);
    add(lua, &cjson, &wrap, "encode", encode)?;
    add(lua, &cjson, &wrap, "decode", decode)?;
    add(
        lua,
        &cjson,
        &wrap,
        "encode_sparse_array",
        cfg_encode_sparse_array,
    )?;
    add(lua, &cjson, &wrap, "encode_max_depth", cfg_encode_max_depth)?;
    add(lua, &cjson, &wrap, "decode_max_depth", cfg_decode_max_depth)?;
    add(
        lua,
        &cjson,
        &wrap,
        "encode_number_precision",
        cfg_encode_number_precision,
    )?;
    add(
        lua,
        &cjson,
        &wrap,
        "encode_keep_buffer",
        cfg_encode_keep_buffer,
    )?;
    add(
        lua,
        &cjson,
        &wrap,
        "encode_invalid_numbers",
        cfg_encode_invalid_numbers,
    )?;
    add(
        lua,
        &cjson,
        &wrap,
        "decode_invalid_numbers",
        cfg_decode_invalid_numbers,
    )?;
    cjson.raw_set("null", null())?;
    cjson.raw_set("_NAME", "cjson")?;
    cjson.raw_set("_VERSION", "2.1.0")?;
    globals.raw_set("cjson", cjson)
}

/// `cjson.null`: the NULL lightuserdata JSON `null` decodes to.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// What a library function yields: its results, or the message Lua raises as a string.
/// (Failures of Lua itself, such as out of memory, stay `mlua::Error`s.)
type Outcome = mlua::Result<Result<Vec<Value>, Raise>>;

/// An error for the script: a message, or a bad argument, whose message names the function
/// as its caller called it (as `luaL_argerror` does), which only the wrapper can tell.
enum Raise {
    Message(String),
    BadArgument { index: usize, detail: String },
}

impl From<String> for Raise {
    fn from(message: String) -> Self {
        Raise::Message(message)
    }
}

/// Adds `name` to `table`: a Lua closure (from `wrap`) around the Rust function `body`.
fn add(
    lua: &Lua,
    table: &Table,
    wrap: &Function,
    name: &str,
    body: impl Fn(&Lua, &[Value]) -> Outcome + MaybeSend + 'static,
) -> mlua::Result<()> {
    let library_name = name.to_string();
    let inner = lua.create_function(move |lua, values: MultiValue| {
        let values = values.into_vec();
        let mut all = Vec::with_capacity(2);
        match body(lua, &values)? {
            Ok(results) => {
                all.push(Value::Boolean(true));
                all.extend(results);
            }
            Err(message) => {
                all.push(Value::Boolean(false));
                let message = match message {
                    Raise::Message(message) => format!("{}{message}", caller_position(lua)),
                    Raise::BadArgument { index, detail } => {
                        argument_error(lua, &library_name, index, &detail)
                    }
                };
                all.push(Value::String(lua.create_string(message)?));
            }
        }
        Ok(MultiValue::from_vec(all))
    })?;
    let wrapped: Function = wrap.call(inner)?;
    table.raw_set(name, wrapped)
}

/// This Lua state's configuration (defaults if `register` was not called on it).
fn config(lua: &Lua) -> Config {
    match lua.try_app_data_ref::<Config>() {
        Ok(Some(cfg)) => *cfg,
        _ => Config::default(),
    }
}

fn store_config(lua: &Lua, cfg: Config) {
    if let Ok(Some(mut slot)) = lua.try_app_data_mut::<Config>() {
        *slot = cfg;
    }
}

fn bad_argument(index: usize, detail: &str) -> Raise {
    Raise::BadArgument {
        index,
        detail: detail.to_string(),
    }
}

/// `luaL_argcheck(l, lua_gettop(l) == 1, 1, "expected 1 argument")`.
fn single_argument(args: &[Value]) -> Result<&Value, Raise> {
    match args {
        [value] => Ok(value),
        _ => Err(bad_argument(1, "expected 1 argument")),
    }
}

// ===== Configuration =====

/// lua-cjson's `json_arg_init`: at most `count` arguments.
fn check_arg_count(args: &[Value], count: usize) -> Result<(), Raise> {
    if args.len() > count {
        return Err(bad_argument(count + 1, "found too many arguments"));
    }
    Ok(())
}

/// lua-cjson's `json_integer_option`: sets `setting` from argument `index` (1-based) unless it
/// is absent or nil, and returns the (new) value.
fn integer_option(
    lua: &Lua,
    args: &[Value],
    index: usize,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> Result<Value, Raise> {
    match index.checked_sub(1).and_then(|i| args.get(i)) {
        None | Some(Value::Nil) => {}
        Some(value) => {
            let number = match value {
                Value::Integer(i) => Some(*i as f64),
                Value::Number(n) => Some(*n),
                Value::String(_) => lua.coerce_number(value.clone()).ok().flatten(),
                _ => None,
            };
            let Some(number) = number else {
                let got = format!("number expected, got {}", type_name(value));
                return Err(bad_argument(index, &got));
            };
            let wanted = c_int_of(number);
            if wanted < min || wanted > max {
                // lua-cjson reports every range error against argument #1.
                let message = format!("expected integer between {min} and {max}");
                return Err(bad_argument(1, &message));
            }
            *setting = wanted;
        }
    }
    Ok(Value::Number(f64::from(*setting)))
}

/// `int value = luaL_checkinteger(...)` on x86-64: truncated to a 64-bit integer (out of
/// range and NaN give `i64::MIN`, as the CPU does), then its low 32 bits. So `2^32 + 5`
/// sets 5 in lua-cjson too.
fn c_int_of(number: f64) -> i32 {
    // 2^63: the first double past `i64::MAX`; `-2^63` itself still fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let wide = if (-LIMIT..LIMIT).contains(&number) {
        number as i64
    } else {
        i64::MIN
    };
    // Keeping the low 32 bits is the point.
    wide as i32
}

/// lua-cjson's `json_enum_option` with `bool_true = 1`: a boolean, or one of `options` by
/// name (`"off"`, `"on"`, ...). Returns the setting as a boolean when it is 0 or 1, else as
/// its name.
fn enum_option(
    lua: &Lua,
    args: &[Value],
    index: usize,
    setting: &mut u8,
    options: &[&str],
) -> mlua::Result<Result<Value, Raise>> {
    match index.checked_sub(1).and_then(|i| args.get(i)) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(on)) => *setting = u8::from(*on),
        Some(value) => {
            let name = match value {
                Value::String(_) | Value::Integer(_) | Value::Number(_) => {
                    lua.coerce_string(value.clone())?
                }
                _ => None,
            };
            let Some(name) = name else {
                let got = format!("string expected, got {}", type_name(value));
                return Ok(Err(bad_argument(index, &got)));
            };
            let bytes = name.as_bytes();
            match options.iter().position(|o| o.as_bytes() == &bytes[..]) {
                Some(position) => *setting = u8::try_from(position).unwrap_or(0),
                None => {
                    let message = format!("invalid option '{}'", String::from_utf8_lossy(&bytes));
                    return Ok(Err(bad_argument(index, &message)));
                }
            }
        }
    }
    Ok(Ok(match *setting {
        0 => Value::Boolean(false),
        1 => Value::Boolean(true),
        n => {
            let name = options.get(usize::from(n)).copied().unwrap_or("");
            Value::String(lua.create_string(name)?)
        }
    }))
}

const BOOL_OPTIONS: &[&str] = &["off", "on"];

/// Runs a configuration function on a copy of the configuration and stores the copy even when
/// it fails half-way, as lua-cjson's in-place updates do.
fn with_config(lua: &Lua, update: impl FnOnce(&mut Config) -> Outcome) -> Outcome {
    let mut cfg = config(lua);
    let outcome = update(&mut cfg);
    store_config(lua, cfg);
    outcome
}

/// `cjson.encode_sparse_array([convert [, ratio [, safe]]])`.
fn cfg_encode_sparse_array(lua: &Lua, args: &[Value]) -> Outcome {
    if let Err(e) = check_arg_count(args, 3) {
        return Ok(Err(e));
    }
    with_config(lua, |cfg| {
        let mut convert = u8::from(cfg.sparse_convert);
        let convert_value = enum_option(lua, args, 1, &mut convert, BOOL_OPTIONS)?;
        cfg.sparse_convert = convert == 1;
        let convert_value = match convert_value {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let ratio = integer_option(lua, args, 2, &mut cfg.sparse_ratio, 0, i32::MAX);
        let ratio = match ratio {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let safe = integer_option(lua, args, 3, &mut cfg.sparse_safe, 0, i32::MAX);
        Ok(safe.map(|safe| vec![convert_value, ratio, safe]))
    })
}

/// A configuration function of one integer option.
fn integer_config(
    lua: &Lua,
    args: &[Value],
    field: fn(&mut Config) -> &mut i32,
    min: i32,
    max: i32,
) -> Outcome {
    if let Err(e) = check_arg_count(args, 1) {
        return Ok(Err(e));
    }
    with_config(lua, |cfg| {
        Ok(integer_option(lua, args, 1, field(cfg), min, max).map(|v| vec![v]))
    })
}

/// `cjson.encode_max_depth([depth])`.
fn cfg_encode_max_depth(lua: &Lua, args: &[Value]) -> Outcome {
    integer_config(lua, args, |c| &mut c.encode_max_depth, 1, i32::MAX)
}

/// `cjson.decode_max_depth([depth])`.
fn cfg_decode_max_depth(lua: &Lua, args: &[Value]) -> Outcome {
    integer_config(lua, args, |c| &mut c.decode_max_depth, 1, i32::MAX)
}

/// `cjson.encode_number_precision([digits])`.
fn cfg_encode_number_precision(lua: &Lua, args: &[Value]) -> Outcome {
    integer_config(lua, args, |c| &mut c.encode_number_precision, 1, 14)
}

/// A configuration function of one enumerated option.
fn enum_config(
    lua: &Lua,
    args: &[Value],
    field: fn(&mut Config) -> &mut u8,
    options: &[&str],
) -> Outcome {
    if let Err(e) = check_arg_count(args, 1) {
        return Ok(Err(e));
    }
    with_config(lua, |cfg| {
        Ok(enum_option(lua, args, 1, field(cfg), options)?.map(|v| vec![v]))
    })
}

/// A configuration function of one on/off option kept as a `bool`.
fn bool_config(
    lua: &Lua,
    args: &[Value],
    get: fn(&Config) -> bool,
    set: fn(&mut Config, bool),
) -> Outcome {
    if let Err(e) = check_arg_count(args, 1) {
        return Ok(Err(e));
    }
    with_config(lua, |cfg| {
        let mut setting = u8::from(get(cfg));
        let outcome = enum_option(lua, args, 1, &mut setting, BOOL_OPTIONS)?;
        set(cfg, setting == 1);
        Ok(outcome.map(|v| vec![v]))
    })
}

/// `cjson.encode_keep_buffer([on])`: state only, see the module doc.
fn cfg_encode_keep_buffer(lua: &Lua, args: &[Value]) -> Outcome {
    bool_config(
        lua,
        args,
        |c| c.encode_keep_buffer,
        |c, on| c.encode_keep_buffer = on,
    )
}

/// `cjson.encode_invalid_numbers([on | "null"])`.
fn cfg_encode_invalid_numbers(lua: &Lua, args: &[Value]) -> Outcome {
    let options = &["off", "on", "null"];
    enum_config(lua, args, |c| &mut c.encode_invalid_numbers, options)
}

/// `cjson.decode_invalid_numbers([on])`.
fn cfg_decode_invalid_numbers(lua: &Lua, args: &[Value]) -> Outcome {
    bool_config(
        lua,
        args,
        |c| c.decode_invalid_numbers,
        |c, on| c.decode_invalid_numbers = on,
    )
}

// ===== Encoding =====

/// Why `encode` stopped: a message for the script, or a failure of Lua itself.
enum EncodeError {
    Message(String),
    Lua(mlua::Error),
}

impl From<mlua::Error> for EncodeError {
    fn from(e: mlua::Error) -> Self {
        EncodeError::Lua(e)
    }
}

/// `cjson.encode(value)`.
fn encode(lua: &Lua, args: &[Value], next: &Function) -> Outcome {
    let value = match single_argument(args) {
        Ok(value) => value.clone(),
        Err(e) => return Ok(Err(e)),
    };
    let mut encoder = Encoder {
        cfg: config(lua),
        next,
        out: Vec::new(),
        frames: Vec::new(),
        current: None,
        outer: Ancestors::new(lua),
        c_stack_slots: 1,
    };
    match encoder.run(value) {
        Ok(()) => Ok(Ok(vec![Value::String(lua.create_string(&encoder.out)?)])),
        Err(EncodeError::Message(message)) => Ok(Err(message.into())),
        Err(EncodeError::Lua(e)) => Err(e),
    }
}

/// An open table on the encoder's stack (the table itself is in `current` or `outer`).
enum EncodeFrame {
    /// Elements `next..=len` are still to be written.
    Array {
        next: i64,
        len: i64,
    },
    Object,
}

impl EncodeFrame {
    /// Lua stack slots lua-cjson's recursion holds for this level while inside a child: the
    /// element (arrays), or the key and the value (objects).
    fn c_stack_slots(&self) -> usize {
        match self {
            EncodeFrame::Array { .. } => 1,
            EncodeFrame::Object => 2,
        }
    }
}

/// What the encoder does next.
enum EncodeStep {
    Close(u8),
    Write(Value),
}

/// Serialises one Lua value into `out`, depth-first with an explicit stack of open tables.
struct Encoder<'a> {
    cfg: Config,
    /// The base library's `next`: raw iteration in `lua_next` order that can be resumed.
    next: &'a Function,
    out: Vec<u8>,
    frames: Vec<EncodeFrame>,
    /// The innermost open table, and the last key written in it (`Nil` before the first, and
    /// in arrays), to resume `next(table, key)`.
    current: Option<(Table, Value)>,
    /// The tables (and keys) of the outer open frames.
    outer: Ancestors,
    /// The Lua stack slots lua-cjson's C recursion would hold at this point (the argument,
    /// plus each open frame's); its nesting ends where they would exceed `LUAI_MAXCSTACK`.
    c_stack_slots: usize,
}

impl Encoder<'_> {
    fn run(&mut self, root: Value) -> Result<(), EncodeError> {
        self.value(root)?;
        loop {
            let step = match (self.current.as_mut(), self.frames.last_mut()) {
                (Some((table, key)), Some(frame)) => match frame {
                    EncodeFrame::Array { next, len } => {
                        if *next > *len {
                            EncodeStep::Close(b']')
                        } else {
                            if *next > 1 {
                                self.out.push(b',');
                            }
                            let value = table.raw_get::<Value>(*next)?;
                            *next += 1;
                            EncodeStep::Write(value)
                        }
                    }
                    EncodeFrame::Object => {
                        let first = key.is_nil();
                        let (k, v): (Value, Value) =
                            self.next.call((table.clone(), key.clone()))?;
                        if k.is_nil() {
                            EncodeStep::Close(b'}')
                        } else {
                            if !first {
                                self.out.push(b',');
                            }
                            append_key(&mut self.out, &self.cfg, &k)?;
                            *key = k;
                            EncodeStep::Write(v)
                        }
                    }
                },
                _ => return Ok(()),
            };
            match step {
                EncodeStep::Close(bracket) => {
                    self.out.push(bracket);
                    self.close()?;
                }
                EncodeStep::Write(value) => self.value(value)?,
            }
            if self.out.len() > MAX_ENCODED_BYTES {
                return Err(too_long());
            }
        }
    }

    /// Writes a scalar, or opens a table (writing its bracket and pushing its frame).
    fn value(&mut self, value: Value) -> Result<(), EncodeError> {
        match value {
            Value::String(s) => append_string(&mut self.out, &s.as_bytes()),
            Value::Integer(i) => append_number(&mut self.out, &self.cfg, i as f64)?,
            Value::Number(n) => append_number(&mut self.out, &self.cfg, n)?,
            Value::Boolean(true) => self.out.extend_from_slice(b"true"),
            Value::Boolean(false) => self.out.extend_from_slice(b"false"),
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"null"),
            Value::Table(table) => self.open(table)?,
            other => {
                let message = format!("Cannot serialise {}: type not supported", type_name(&other));
                return Err(EncodeError::Message(message));
            }
        }
        Ok(())
    }

    /// lua-cjson's depth check (`encode_max_depth`, then `lua_checkstack(l, 3)`), its
    /// array-or-object decision, and the opening bracket.
    fn open(&mut self, table: Table) -> Result<(), EncodeError> {
        let depth = self.frames.len() + 1;
        let limit = usize::try_from(self.cfg.encode_max_depth).unwrap_or(0);
        if depth > limit || self.c_stack_slots + 3 > LUAI_MAXCSTACK {
            let message = format!("Cannot serialise, excessive nesting ({depth})");
            return Err(EncodeError::Message(message));
        }
        let frame = match array_length(&table, &self.cfg)? {
            Some(len) if len > 0 => {
                self.out.push(b'[');
                EncodeFrame::Array { next: 1, len }
            }
            _ => {
                self.out.push(b'{');
                EncodeFrame::Object
            }
        };
        if let Some((parent, key)) = self.current.take() {
            self.outer.push(parent, key)?;
        }
        self.current = Some((table, Value::Nil));
        self.c_stack_slots += frame.c_stack_slots();
        self.frames.push(frame);
        Ok(())
    }

    /// Ends the innermost frame; its parent becomes current.
    fn close(&mut self) -> Result<(), EncodeError> {
        if let Some(frame) = self.frames.pop() {
            self.c_stack_slots -= frame.c_stack_slots();
        }
        self.current = if self.frames.is_empty() {
            None
        } else {
            Some(self.outer.pop()?)
        };
        Ok(())
    }
}

/// Lua 5.1's `LUAI_MAXCSTACK`: the most stack slots a C function may use. lua-cjson's
/// recursion stops there ("excessive nesting" / "too many nested data structures") even when
/// the configured depth is higher: near 8000 levels of arrays, 4000 of objects.
const LUAI_MAXCSTACK: usize = 8000;

/// The tables of outer open frames, kept in a Lua table rather than as Rust handles: every
/// mlua handle takes a slot of mlua's reference stack, which Lua 5.1 caps at
/// `LUAI_MAXCSTACK` (running out panics), so nesting must not cost handles.
struct Ancestors {
    lua: Lua,
    /// `saved[2i - 1]` is the `i`-th outer table, `saved[2i]` its key (created on first use).
    saved: Option<Table>,
    count: i64,
}

impl Ancestors {
    fn new(lua: &Lua) -> Self {
        Ancestors {
            lua: lua.clone(),
            saved: None,
            count: 0,
        }
    }

    fn push(&mut self, table: Table, key: Value) -> mlua::Result<()> {
        let saved = match &self.saved {
            Some(saved) => saved,
            None => self.saved.insert(self.lua.create_table()?),
        };
        self.count += 1;
        saved.raw_set(2 * self.count - 1, table)?;
        saved.raw_set(2 * self.count, key)
    }

    fn pop(&mut self) -> mlua::Result<(Table, Value)> {
        let Some(saved) = &self.saved else {
            return Err(mlua::Error::runtime("cjson: no outer table to return to"));
        };
        let table: Table = saved.raw_get(2 * self.count - 1)?;
        let key: Value = saved.raw_get(2 * self.count)?;
        saved.raw_set(2 * self.count - 1, Value::Nil)?;
        saved.raw_set(2 * self.count, Value::Nil)?;
        self.count -= 1;
        Ok((table, key))
    }
}

fn too_long() -> EncodeError {
    EncodeError::Message(format!(
        "Cannot serialise, output exceeds {MAX_ENCODED_BYTES} bytes"
    ))
}

/// lua-cjson's `lua_array_length`: `Some(max key)` when every key is an integer >= 1 and the
/// table is not excessively sparse, `None` for an object (or a sparse array being converted).
///
/// lua-cjson keeps the largest key in a C `int`; a key beyond `i32::MAX` converts to
/// `i32::MIN` on x86-64 (where Redis runs), which later makes the table an object. That is
/// reproduced so the same tables encode the same way (`{[2^40] = 1}` is `{"1099511627776":1}`).
fn array_length(table: &Table, cfg: &Config) -> Result<Option<i64>, EncodeError> {
    let mut max: i32 = 0;
    let mut items: i64 = 0;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let k = match key {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if k < 1.0 || k.floor() != k {
            return Ok(None);
        }
        if k > f64::from(max) {
            max = if k <= f64::from(i32::MAX) {
                k as i32
            } else {
                i32::MIN
            };
        }
        items += 1;
    }
    let max = i64::from(max);
    let ratio = i64::from(cfg.sparse_ratio);
    if ratio > 0 && max > items.saturating_mul(ratio) && max > i64::from(cfg.sparse_safe) {
        if !cfg.sparse_convert {
            let message = "Cannot serialise table: excessively sparse array".to_string();
            return Err(EncodeError::Message(message));
        }
        return Ok(None);
    }
    // Each element takes at least one byte: a longer array cannot fit in the output anyway.
    if max > i64::try_from(MAX_ENCODED_BYTES).unwrap_or(i64::MAX) {
        return Err(too_long());
    }
    Ok(Some(max))
}

/// An object key: strings as strings, numbers as quoted `%.14g`, anything else an error.
fn append_key(out: &mut Vec<u8>, cfg: &Config, key: &Value) -> Result<(), EncodeError> {
    match key {
        Value::String(s) => append_string(out, &s.as_bytes()),
        Value::Integer(_) | Value::Number(_) => {
            let n = match key {
                Value::Integer(i) => *i as f64,
                Value::Number(n) => *n,
                _ => 0.0,
            };
            out.push(b'"');
            append_number(out, cfg, n)?;
            out.push(b'"');
        }
        other => {
            let message = format!(
                "Cannot serialise {}: table key must be a number or string",
                type_name(other)
            );
            return Err(EncodeError::Message(message));
        }
    }
    out.push(b':');
    Ok(())
}

/// A string with lua-cjson's escapes (its `char2escape` table).
fn append_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'/' => b"\\/",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain_from..i).unwrap_or_default());
        plain_from = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hex = |nibble: u8| HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 15)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(bytes.get(plain_from..).unwrap_or_default());
    out.push(b'"');
}

/// A number as `%.<precision>g`, after lua-cjson's NaN/Inf policy.
fn append_number(out: &mut Vec<u8>, cfg: &Config, n: f64) -> Result<(), EncodeError> {
    if !n.is_finite() {
        match cfg.encode_invalid_numbers {
            0 => {
                let message = "Cannot serialise number: must not be NaN or Inf".to_string();
                return Err(EncodeError::Message(message));
            }
            1 if n.is_nan() => {
                out.extend_from_slice(b"nan");
                return Ok(());
            }
            1 => {}
            _ => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
        }
    }
    let precision = usize::try_from(cfg.encode_number_precision.clamp(1, 14)).unwrap_or(14);
    out.extend_from_slice(format_g(n, precision).as_bytes());
    Ok(())
}

/// C's `printf("%.<precision>g", n)` for `precision` >= 1.
fn format_g(n: f64, precision: usize) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // The exponent after rounding to `precision` significant digits decides the style.
    let scientific = format!("{:.*e}", precision - 1, n);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let precision_i = i64::try_from(precision).unwrap_or(14);
    if exponent < -4 || exponent >= precision_i {
        let mantissa = strip_fraction_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        let decimals = usize::try_from(precision_i - 1 - exponent).unwrap_or(0);
        strip_fraction_zeros(&format!("{n:.decimals$}")).to_string()
    }
}

/// `%g` drops trailing zeros of the fraction, and the point if nothing is left after it.
fn strip_fraction_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

// ===== Decoding =====

/// `cjson.decode(text)`.
fn decode(lua: &Lua, args: &[Value]) -> Outcome {
    let value = match single_argument(args) {
        Ok(value) => value,
        Err(e) => return Ok(Err(e)),
    };
    let text = match value {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {
            lua.coerce_string(value.clone())?
        }
        _ => None,
    };
    let Some(text) = text else {
        let got = format!("string expected, got {}", type_name(value));
        return Ok(Err(bad_argument(1, &got)));
    };
    let bytes = text.as_bytes();
    // RFC 4627: the first two bytes of JSON text are ASCII, so a NUL among them means
    // UTF-16 or UTF-32.
    if bytes.len() >= 2 && (bytes.first() == Some(&0) || bytes.get(1) == Some(&0)) {
        let message = "JSON parser does not support UTF-16 or UTF-32".to_string();
        return Ok(Err(Raise::Message(message)));
    }
    let mut decoder = Decoder {
        lua,
        cfg: config(lua),
        data: &bytes,
        pos: 0,
        tmp: Vec::new(),
        frames: Vec::new(),
        current: None,
        outer: Ancestors::new(lua),
        c_stack_slots: 1,
    };
    match decoder.run() {
        Ok(value) => Ok(Ok(vec![value])),
        Err(DecodeError::Message(message)) => Ok(Err(message.into())),
        Err(DecodeError::Lua(e)) => Err(e),
    }
}

/// Why `decode` stopped: a message for the script, or a failure of Lua itself.
enum DecodeError {
    Message(String),
    Lua(mlua::Error),
}

impl From<mlua::Error> for DecodeError {
    fn from(e: mlua::Error) -> Self {
        DecodeError::Lua(e)
    }
}

/// lua-cjson's tokens; `Str`'s text is in the decoder's `tmp`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// A malformed token, with lua-cjson's description of it.
    Error(&'static str),
}

impl Token {
    /// How lua-cjson's errors name what they found.
    fn name(self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(description) => description,
        }
    }
}

/// An open container on the decoder's stack (the table itself is in `current` or `outer`).
enum DecodeFrame {
    /// The next element goes to index `next`.
    Array { next: i64 },
    /// The value being parsed goes under `key`.
    Object { key: Vec<u8> },
}

impl DecodeFrame {
    /// Lua stack slots lua-cjson's recursion holds for this level while inside a child: the
    /// table (arrays), or the table and the key (objects).
    fn c_stack_slots(&self) -> usize {
        match self {
            DecodeFrame::Array { .. } => 1,
            DecodeFrame::Object { .. } => 2,
        }
    }
}

/// A one-pass JSON parser building Lua values, with an explicit stack of open containers so
/// that nesting costs heap, not call stack. Work and memory are linear in the input.
struct Decoder<'a> {
    lua: &'a Lua,
    cfg: Config,
    data: &'a [u8],
    pos: usize,
    /// The current string token's decoded bytes (reused, never longer than the input).
    tmp: Vec<u8>,
    frames: Vec<DecodeFrame>,
    /// The innermost open container's table.
    current: Option<Table>,
    /// The tables of the outer open containers.
    outer: Ancestors,
    /// The Lua stack slots lua-cjson's C recursion would hold (see `Encoder::c_stack_slots`).
    c_stack_slots: usize,
}

impl Decoder<'_> {
    /// The byte at `i`, or NUL past the end: like lua-cjson, which reads a NUL-terminated
    /// string, a NUL byte ends the text wherever it is.
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn run(&mut self) -> Result<Value, DecodeError> {
        let (mut token, mut index) = self.next_token();
        loop {
            // A value starts at `token`.
            let mut value = match token {
                Token::ObjBegin => {
                    let table = self.descend(3)?;
                    (token, index) = self.next_token();
                    if token == Token::ObjEnd {
                        Value::Table(table)
                    } else {
                        self.object_key(token, index)?;
                        let key = self.tmp.clone();
                        self.push(table, DecodeFrame::Object { key })?;
                        (token, index) = self.next_token();
                        continue;
                    }
                }
                Token::ArrBegin => {
                    let table = self.descend(2)?;
                    (token, index) = self.next_token();
                    if token == Token::ArrEnd {
                        Value::Table(table)
                    } else {
                        self.push(table, DecodeFrame::Array { next: 1 })?;
                        continue;
                    }
                }
                Token::Str => Value::String(self.lua.create_string(&self.tmp)?),
                Token::Number(n) => Value::Number(n),
                Token::Boolean(b) => Value::Boolean(b),
                Token::Null => null(),
                _ => return Err(parse_error("value", token, index)),
            };
            // `value` is complete: store it in its container, closing containers as they end.
            loop {
                let in_array = match (&self.current, self.frames.last_mut()) {
                    (Some(table), Some(DecodeFrame::Array { next })) => {
                        table.raw_set(*next, value)?;
                        *next += 1;
                        true
                    }
                    (Some(table), Some(DecodeFrame::Object { key })) => {
                        table.raw_set(self.lua.create_string(&key)?, value)?;
                        false
                    }
                    _ => {
                        (token, index) = self.next_token();
                        if token != Token::End {
                            return Err(parse_error("the end", token, index));
                        }
                        return Ok(value);
                    }
                };
                (token, index) = self.next_token();
                if token == Token::Comma {
                    (token, index) = self.next_token();
                    if !in_array {
                        self.object_key(token, index)?;
                        if let Some(DecodeFrame::Object { key }) = self.frames.last_mut() {
                            key.clear();
                            key.extend_from_slice(&self.tmp);
                        }
                        (token, index) = self.next_token();
                    }
                    break;
                }
                let (end, expected) = if in_array {
                    (Token::ArrEnd, "comma or array end")
                } else {
                    (Token::ObjEnd, "comma or object end")
                };
                if token != end {
                    return Err(parse_error(expected, token, index));
                }
                // The container ended: it is the value completed one level up.
                value = Value::Table(self.pop()?);
            }
        }
    }

    /// Opens a container: lua-cjson's depth check (`decode_max_depth`, then
    /// `lua_checkstack(l, slots)`), then its table.
    fn descend(&mut self, slots: usize) -> Result<Table, DecodeError> {
        let depth = self.frames.len() + 1;
        let limit = usize::try_from(self.cfg.decode_max_depth).unwrap_or(0);
        if depth > limit || self.c_stack_slots + slots > LUAI_MAXCSTACK {
            return Err(DecodeError::Message(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos
            )));
        }
        Ok(self.lua.create_table()?)
    }

    /// Makes `table` the innermost open container.
    fn push(&mut self, table: Table, frame: DecodeFrame) -> mlua::Result<()> {
        if let Some(parent) = self.current.take() {
            self.outer.push(parent, Value::Nil)?;
        }
        self.current = Some(table);
        self.c_stack_slots += frame.c_stack_slots();
        self.frames.push(frame);
        Ok(())
    }

    /// Closes the innermost open container and returns its table.
    fn pop(&mut self) -> Result<Table, DecodeError> {
        if let Some(frame) = self.frames.pop() {
            self.c_stack_slots -= frame.c_stack_slots();
        }
        let done = self.current.take();
        if !self.frames.is_empty() {
            self.current = Some(self.outer.pop()?.0);
        }
        match done {
            Some(table) => Ok(table),
            None => Err(DecodeError::Lua(mlua::Error::runtime(
                "cjson: no open table",
            ))),
        }
    }

    /// An object key: `token` must be a string (its text stays in `tmp`), then a colon.
    fn object_key(&mut self, token: Token, index: usize) -> Result<(), DecodeError> {
        if token != Token::Str {
            return Err(parse_error("object key string", token, index));
        }
        let (token, index) = self.next_token();
        if token != Token::Colon {
            return Err(parse_error("colon", token, index));
        }
        Ok(())
    }

    /// The next token and its 0-based position (for errors: where lua-cjson reports it).
    fn next_token(&mut self) -> (Token, usize) {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let start = self.pos;
        let single = match self.at(start) {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            _ => None,
        };
        if let Some(token) = single {
            self.pos += 1;
            return (token, start);
        }
        match self.at(start) {
            0 => (Token::End, start),
            b'"' => self.string_token(),
            b'-' | b'0'..=b'9' => {
                if !self.cfg.decode_invalid_numbers && self.is_invalid_number() {
                    return (Token::Error("invalid number"), start);
                }
                (self.number_token(), start)
            }
            b't' | b'f' | b'n' | b'i' | b'I' | b'N' | b'+' => {
                let rest = self.data.get(start..).unwrap_or_default();
                if rest.starts_with(b"true") {
                    self.pos += 4;
                    (Token::Boolean(true), start)
                } else if rest.starts_with(b"false") {
                    self.pos += 5;
                    (Token::Boolean(false), start)
                } else if rest.starts_with(b"null") {
                    self.pos += 4;
                    (Token::Null, start)
                } else if self.cfg.decode_invalid_numbers && self.is_invalid_number() {
                    (self.number_token(), start)
                } else {
                    (Token::Error("invalid token"), start)
                }
            }
            _ => (Token::Error("invalid token"), start),
        }
    }

    /// lua-cjson's `json_is_invalid_number`: forms `strtod` reads but JSON forbids.
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        match self.at(p) {
            b'+' => return true,
            b'-' => p += 1,
            _ => {}
        }
        let c = self.at(p);
        if c == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        }
        if c <= b'9' {
            return false;
        }
        self.starts_with_ignore_case(p, b"inf") || self.starts_with_ignore_case(p, b"nan")
    }

    fn starts_with_ignore_case(&self, at: usize, word: &[u8]) -> bool {
        self.data
            .get(at..at + word.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(word))
    }

    /// A number as C's `strtod` reads it at `pos`, or the "invalid number" error.
    fn number_token(&mut self) -> Token {
        match self.strtod(self.pos) {
            Some((n, end)) => {
                self.pos = end;
                Token::Number(n)
            }
            None => Token::Error("invalid number"),
        }
    }

    /// glibc `strtod` in the C locale: sign, then `inf`/`infinity`/`nan[(chars)]`, a hex
    /// float (`0x...[p...]`) or a decimal one. Returns the value and the end position.
    fn strtod(&self, start: usize) -> Option<(f64, usize)> {
        let mut p = start;
        let negative = match self.at(p) {
            b'-' => {
                p += 1;
                true
            }
            b'+' => {
                p += 1;
                false
            }
            _ => false,
        };
        let signed = |n: f64| if negative { -n } else { n };
        if self.starts_with_ignore_case(p, b"inf") {
            p += 3;
            if self.starts_with_ignore_case(p, b"inity") {
                p += 5;
            }
            return Some((signed(f64::INFINITY), p));
        }
        if self.starts_with_ignore_case(p, b"nan") {
            p += 3;
            if self.at(p) == b'(' {
                let mut q = p + 1;
                while self.at(q).is_ascii_alphanumeric() || self.at(q) == b'_' {
                    q += 1;
                }
                if self.at(q) == b')' {
                    p = q + 1;
                }
            }
            return Some((signed(f64::NAN), p));
        }
        if self.at(p) == b'0' && (self.at(p + 1) | 0x20) == b'x' {
            if let Some((n, end)) = self.hex_float(p + 2) {
                return Some((signed(n), end));
            }
        }
        // Decimal: digits, optional fraction, at least one digit, optional exponent.
        let digits_start = p;
        while self.at(p).is_ascii_digit() {
            p += 1;
        }
        let mut digits = p - digits_start;
        if self.at(p) == b'.' {
            let fraction_start = p + 1;
            let mut q = fraction_start;
            while self.at(q).is_ascii_digit() {
                q += 1;
            }
            digits += q - fraction_start;
            if digits > 0 {
                p = q;
            }
        }
        if digits == 0 {
            return None;
        }
        if (self.at(p) | 0x20) == b'e' {
            let mut q = p + 1;
            if matches!(self.at(q), b'+' | b'-') {
                q += 1;
            }
            if self.at(q).is_ascii_digit() {
                while self.at(q).is_ascii_digit() {
                    q += 1;
                }
                p = q;
            }
        }
        let text = std::str::from_utf8(self.data.get(digits_start..p)?).ok()?;
        let n: f64 = text.parse().ok()?;
        Some((signed(n), p))
    }

    /// The part of a hex float after `0x`: hex digits with an optional point (at least one
    /// digit), then an optional binary exponent `p[+-]digits`.
    fn hex_float(&self, start: usize) -> Option<(f64, usize)> {
        let mut p = start;
        let mut mantissa: u64 = 0;
        let mut exponent: i64 = 0;
        let mut digits = 0;
        let mut seen_point = false;
        loop {
            let c = self.at(p);
            if c == b'.' && !seen_point {
                seen_point = true;
                p += 1;
                continue;
            }
            let Some(d) = char::from(c).to_digit(16) else {
                break;
            };
            digits += 1;
            if mantissa < (1 << 60) {
                mantissa = mantissa * 16 + u64::from(d);
                if seen_point {
                    exponent -= 4;
                }
            } else {
                // Past 60 bits a digit only matters as a sticky bit for rounding (bit 0 is far
                // below a double's 53), and before the point it scales the value.
                if d != 0 {
                    mantissa |= 1;
                }
                if !seen_point {
                    exponent += 4;
                }
            }
            p += 1;
        }
        if digits == 0 {
            return None;
        }
        if (self.at(p) | 0x20) == b'p' {
            let mut q = p + 1;
            let negative = match self.at(q) {
                b'-' => {
                    q += 1;
                    true
                }
                b'+' => {
                    q += 1;
                    false
                }
                _ => false,
            };
            if self.at(q).is_ascii_digit() {
                let mut e: i64 = 0;
                while let Some(d) = char::from(self.at(q)).to_digit(10) {
                    e = e.saturating_mul(10).saturating_add(i64::from(d));
                    q += 1;
                }
                exponent = exponent.saturating_add(if negative { -e } else { e });
                p = q;
            }
        }
        Some((scale_by_power_of_two(mantissa as f64, exponent), p))
    }

    /// A string token at `pos` (on its opening quote), decoded into `tmp`.
    fn string_token(&mut self) -> (Token, usize) {
        let start = self.pos;
        self.pos += 1;
        self.tmp.clear();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => break,
                0 => return (Token::Error("unexpected end of string"), self.pos),
                b'\\' => {
                    let unescaped = match self.at(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 0x0c,
                        b'r' => b'\r',
                        b'u' => {
                            if !self.unicode_escape() {
                                return (Token::Error("invalid unicode escape code"), self.pos);
                            }
                            continue;
                        }
                        _ => return (Token::Error("invalid escape code"), self.pos),
                    };
                    self.tmp.push(unescaped);
                    self.pos += 2;
                }
                _ => {
                    // Copy the run of plain bytes in one go.
                    let rest = self.data.get(self.pos..).unwrap_or_default();
                    let run = rest
                        .iter()
                        .position(|&b| matches!(b, b'"' | b'\\' | 0))
                        .unwrap_or(rest.len());
                    self.tmp
                        .extend_from_slice(rest.get(..run).unwrap_or_default());
                    self.pos += run;
                }
            }
        }
        self.pos += 1;
        (Token::Str, start)
    }

    /// `\uXXXX` (or a surrogate pair of them) at `pos` appended to `tmp` as UTF-8; false if
    /// malformed (then `pos` stays on the backslash, where lua-cjson reports it).
    fn unicode_escape(&mut self) -> bool {
        let Some(mut codepoint) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut escape_len = 6;
        if codepoint & 0xF800 == 0xD800 {
            // A surrogate: it must be a high one, followed by an escaped low one.
            if codepoint & 0x400 != 0 {
                return false;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = self.hex4(self.pos + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            codepoint = (((codepoint & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            escape_len = 12;
        }
        let mut utf8 = [0u8; 4];
        match char::from_u32(codepoint) {
            Some(c) => self
                .tmp
                .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
            None => return false,
        }
        self.pos += escape_len;
        true
    }

    /// Four hex digits at `at`.
    fn hex4(&self, at: usize) -> Option<u32> {
        (at..at + 4).try_fold(0, |acc, i| {
            Some(acc * 16 + char::from(self.at(i)).to_digit(16)?)
        })
    }
}

/// `n * 2^exponent` without overflowing the intermediate power.
fn scale_by_power_of_two(mut n: f64, exponent: i64) -> f64 {
    let mut e = exponent.clamp(-2200, 2200);
    while e > 1000 {
        n *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        n *= 2f64.powi(-1000);
        e += 1000;
    }
    n * 2f64.powi(i32::try_from(e).unwrap_or(0))
}

/// lua-cjson's syntax error: what was expected, what was found, 1-based position.
fn parse_error(expected: &str, found: Token, index: usize) -> DecodeError {
    DecodeError::Message(format!(
        "Expected {expected} but found {} at character {}",
        found.name(),
        index + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::LuaString;

    fn lua() -> Lua {
        let lua = Lua::new();
        let globals = lua.globals();
        register(&lua, &globals).unwrap();
        lua
    }

    fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
        lua.load(code).eval().unwrap()
    }

    fn encode_of(lua: &Lua, expr: &str) -> String {
        eval(lua, &format!("return cjson.encode({expr})"))
    }

    /// The message `code` raises; it must be a Lua string, as lua-cjson's errors are.
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
    fn encodes_scalars() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("1", "1"),
            ("-1", "-1"),
            ("0.1", "0.1"),
            ("1e300", "1e+300"),
            ("-1e-300", "-1e-300"),
            ("1/3", "0.33333333333333"),
            ("123456789012345678", "1.2345678901235e+17"),
            ("100000000000000", "1e+14"),
            ("10000000000000", "10000000000000"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("-0.0", "-0"),
            ("0", "0"),
            ("3.14159265358979", "3.1415926535898"),
            ("true", "true"),
            ("false", "false"),
            ("nil", "null"),
            ("cjson.null", "null"),
            ("'hello'", "\"hello\""),
        ];
        for (expr, want) in cases {
            assert_eq!(encode_of(&lua, expr), *want, "{expr}");
        }
    }

    #[test]
    fn format_g_matches_printf() {
        let cases: &[(f64, usize, &str)] = &[
            (0.5, 14, "0.5"),
            (1e15, 14, "1e+15"),
            (123456.0, 3, "1.23e+05"),
            (99999.5, 5, "1e+05"),
            (0.000123456, 2, "0.00012"),
            (1e100, 14, "1e+100"),
            (2.5, 1, "2"),
            (f64::INFINITY, 14, "inf"),
            (f64::NEG_INFINITY, 14, "-inf"),
            (f64::MIN_POSITIVE, 14, "2.2250738585072e-308"),
        ];
        for (n, precision, want) in cases {
            assert_eq!(format_g(*n, *precision), *want, "{n} at {precision}");
        }
    }

    #[test]
    fn escapes_strings_as_lua_cjson() {
        let lua = lua();
        let got = encode_of(&lua, r#""a/b\"c\\d\b\f\n\r\t\0\1\31\127\11 é""#);
        assert_eq!(
            got,
            "\"a\\/b\\\"c\\\\d\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\\u007f\\u000b é\""
        );
        // Bytes that are not UTF-8 pass through untouched.
        let raw: LuaString = eval(&lua, r#"return cjson.encode("\255\254")"#);
        assert_eq!(&raw.as_bytes()[..], b"\"\xff\xfe\"");
    }

    #[test]
    fn tables_with_keys_one_to_n_are_arrays() {
        let lua = lua();
        assert_eq!(encode_of(&lua, "{1, 'a', true}"), "[1,\"a\",true]");
        assert_eq!(encode_of(&lua, "{}"), "{}");
        assert_eq!(encode_of(&lua, "{{}, {{}}}"), "[{},[{}]]");
        assert_eq!(encode_of(&lua, "{1, nil, 3}"), "[1,null,3]");
        assert_eq!(encode_of(&lua, "{[1] = 'a', [2.0] = 'b'}"), "[\"a\",\"b\"]");
        assert_eq!(encode_of(&lua, "{cjson.null, cjson.null}"), "[null,null]");
        // Up to `safe` (10), any sparseness is an array.
        assert_eq!(encode_of(&lua, "{[3] = 1}"), "[null,null,1]");
        assert_eq!(
            encode_of(&lua, "{[10] = 1}"),
            "[null,null,null,null,null,null,null,null,null,1]"
        );
        // Beyond it, arrays with max <= 2 * items are still arrays.
        assert_eq!(
            encode_of(&lua, "{1,2,3,4,5,6, [12] = 12}"),
            "[1,2,3,4,5,6,null,null,null,null,null,12]"
        );
        // Keys that are not integers >= 1 make an object, with number keys as strings.
        assert_eq!(encode_of(&lua, "{[0] = 'z'}"), "{\"0\":\"z\"}");
        assert_eq!(encode_of(&lua, "{[1.5] = 'x'}"), "{\"1.5\":\"x\"}");
        assert_eq!(encode_of(&lua, "{[-1] = 'x'}"), "{\"-1\":\"x\"}");
        assert_eq!(encode_of(&lua, "{a = 1}"), "{\"a\":1}");
        assert_eq!(encode_of(&lua, "{['a/b'] = {}}"), "{\"a\\/b\":{}}");
    }

    #[test]
    fn objects_round_trip_whatever_the_key_order() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local t = {a = 1, b = {1, 2, {c = "x"}}, [5] = false, d = cjson.null}
            local text = cjson.encode(t)
            local back = cjson.decode(text)
            return back.a == 1 and back.b[2] == 2 and back.b[3].c == "x"
                and back["5"] == false and back.d == cjson.null
                and text:sub(1, 1) == "{" and #text == #'{"a":1,"b":[1,2,{"c":"x"}],"5":false,"d":null}'
            "#,
        );
        assert!(ok);
    }

    #[test]
    fn excessively_sparse_arrays() {
        let lua = lua();
        let message = "Cannot serialise table: excessively sparse array";
        assert_eq!(error_of(&lua, "cjson.encode({[11] = 1})"), message);
        assert_eq!(error_of(&lua, "cjson.encode({1, 2, [1000] = 3})"), message);
        // Keys past i32::MAX wrap as in lua-cjson's C `int` and make an object.
        assert_eq!(encode_of(&lua, "{[2^40] = 1}"), "{\"1099511627776\":1}");
        // Converting instead of failing.
        let values: (bool, f64, f64) = eval(&lua, "return cjson.encode_sparse_array(true)");
        assert_eq!(values, (true, 2.0, 10.0));
        assert_eq!(encode_of(&lua, "{[11] = 1}"), "{\"11\":1}");
        // Ratio 0: never sparse.
        let _: MultiValue = eval(&lua, "return cjson.encode_sparse_array(false, 0)");
        assert_eq!(encode_of(&lua, "{[12] = 1}").matches("null").count(), 11);
    }

    #[test]
    fn encode_errors() {
        let lua = lua();
        assert_eq!(
            error_of(&lua, "cjson.encode({[{}] = 1})"),
            "Cannot serialise table: table key must be a number or string"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode({[true] = 1})"),
            "Cannot serialise boolean: table key must be a number or string"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode(print)"),
            "Cannot serialise function: type not supported"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode({f = print})"),
            "Cannot serialise function: type not supported"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode(coroutine.create(function() end))"),
            "Cannot serialise thread: type not supported"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode(newproxy())"),
            "Cannot serialise userdata: type not supported"
        );
        for expr in ["0/0", "1/0", "-1/0", "{1/0}", "{a = 1, [1/0] = 1}"] {
            assert_eq!(
                error_of(&lua, &format!("cjson.encode({expr})")),
                "Cannot serialise number: must not be NaN or Inf",
                "{expr}"
            );
        }
        assert_eq!(
            error_of(&lua, "cjson.encode()"),
            "bad argument #1 to 'encode' (expected 1 argument)"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode(1, 2)"),
            "bad argument #1 to 'encode' (expected 1 argument)"
        );
    }

    #[test]
    fn invalid_numbers_can_be_allowed() {
        let lua = lua();
        let mode: String = eval(&lua, "return cjson.encode_invalid_numbers('null')");
        assert_eq!(mode, "null");
        assert_eq!(encode_of(&lua, "{1/0, 0/0}"), "[null,null]");
        let mode: bool = eval(&lua, "return cjson.encode_invalid_numbers(true)");
        assert!(mode);
        assert_eq!(encode_of(&lua, "{1/0, -1/0, 0/0}"), "[inf,-inf,nan]");
        let mode: bool = eval(&lua, "return cjson.encode_invalid_numbers('off')");
        assert!(!mode);
    }

    #[test]
    fn encode_nesting_limit() {
        let lua = lua();
        let nested = |depth: usize| {
            format!(
                "(function() local t = {{}} for i = 2, {depth} do t = {{t}} end return t end)()"
            )
        };
        let text = encode_of(&lua, &nested(1000));
        assert_eq!(text.len(), 999 + 2 + 999);
        assert_eq!(
            error_of(&lua, &format!("cjson.encode({})", nested(1001))),
            "Cannot serialise, excessive nesting (1001)"
        );
        // A table containing itself stops at the limit.
        assert_eq!(
            error_of(
                &lua,
                "cjson.encode((function() local t = {} t.a = t return t end)())"
            ),
            "Cannot serialise, excessive nesting (1001)"
        );
        let depth: f64 = eval(&lua, "return cjson.encode_max_depth(3)");
        assert_eq!(depth, 3.0);
        assert_eq!(encode_of(&lua, "{{{}}}"), "[[{}]]");
        assert_eq!(
            error_of(&lua, "cjson.encode({{{{}}}})"),
            "Cannot serialise, excessive nesting (4)"
        );
        // Raised far, nesting stops where lua-cjson's Lua C stack runs out (values from
        // Redis's C library with LUAI_MAXCSTACK 8000), and the output is not lost.
        let _: f64 = eval(&lua, "return cjson.encode_max_depth(1000000)");
        let self_array = "(function() local t = {} t[1] = t return t end)()";
        assert_eq!(
            error_of(&lua, &format!("cjson.encode({self_array})")),
            "Cannot serialise, excessive nesting (7998)"
        );
        let self_object = "(function() local t = {} t.k = t return t end)()";
        assert_eq!(
            error_of(&lua, &format!("cjson.encode({self_object})")),
            "Cannot serialise, excessive nesting (4000)"
        );
        let text = encode_of(&lua, &nested(7997));
        assert_eq!(text.len(), 7996 * 2 + 2);
    }

    #[test]
    fn number_precision() {
        let lua = lua();
        let precision: f64 = eval(&lua, "return cjson.encode_number_precision(3)");
        assert_eq!(precision, 3.0);
        assert_eq!(encode_of(&lua, "{3.14159, 1234}"), "[3.14,1.23e+03]");
        assert_eq!(
            error_of(&lua, "cjson.encode_number_precision(15)"),
            "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)"
        );
    }

    #[test]
    fn configuration_functions() {
        let lua = lua();
        let v: (bool, f64, f64) = eval(&lua, "return cjson.encode_sparse_array()");
        assert_eq!(v, (false, 2.0, 10.0));
        let v: (bool, f64, f64) = eval(&lua, "return cjson.encode_sparse_array('on', 3, 20)");
        assert_eq!(v, (true, 3.0, 20.0));
        let v: f64 = eval(&lua, "return cjson.encode_max_depth()");
        assert_eq!(v, 1000.0);
        let v: f64 = eval(&lua, "return cjson.decode_max_depth('12')");
        assert_eq!(v, 12.0);
        let v: bool = eval(&lua, "return cjson.encode_keep_buffer()");
        assert!(v);
        let v: bool = eval(&lua, "return cjson.encode_keep_buffer(false)");
        assert!(!v);
        let v: bool = eval(&lua, "return cjson.decode_invalid_numbers()");
        assert!(v);
        let v: bool = eval(&lua, "return cjson.encode_invalid_numbers()");
        assert!(!v);
        let v: (String, String) = eval(&lua, "return cjson._NAME, cjson._VERSION");
        assert_eq!(v, ("cjson".to_string(), "2.1.0".to_string()));
        assert_eq!(
            error_of(&lua, "cjson.encode_max_depth(1, 2)"),
            "bad argument #2 to 'encode_max_depth' (found too many arguments)"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode_max_depth(0)"),
            "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode_max_depth({})"),
            "bad argument #1 to 'decode_max_depth' (number expected, got table)"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode_sparse_array(true, 1, -1)"),
            "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode_keep_buffer('yes')"),
            "bad argument #1 to 'encode_keep_buffer' (invalid option 'yes')"
        );
        assert_eq!(
            error_of(&lua, "cjson.encode_invalid_numbers({})"),
            "bad argument #1 to 'encode_invalid_numbers' (string expected, got table)"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode_invalid_numbers('null')"),
            "bad argument #1 to 'decode_invalid_numbers' (invalid option 'null')"
        );
    }

    #[test]
    fn settings_belong_to_the_lua_state() {
        let first = lua();
        let second = lua();
        let _: f64 = eval(&first, "return cjson.encode_max_depth(2)");
        let there: f64 = eval(&second, "return cjson.encode_max_depth()");
        assert_eq!(there, 1000.0);
        let here: f64 = eval(&first, "return cjson.encode_max_depth()");
        assert_eq!(here, 2.0);
    }

    #[test]
    fn decodes_values() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local v = cjson.decode('{"a": [1, 2.5, -3e2, true, false, null, "x"], "b": {}, "c": []}')
            return v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == -300 and v.a[4] == true
                and v.a[5] == false and v.a[6] == cjson.null and v.a[7] == "x" and #v.a == 7
                and type(v.b) == "table" and next(v.b) == nil and next(v.c) == nil
            "#,
        );
        assert!(ok);
        let v: f64 = eval(&lua, "return cjson.decode(' \\t\\r\\n 42 ')");
        assert_eq!(v, 42.0);
        let v: String = eval(&lua, "return cjson.decode('\"hi\"')");
        assert_eq!(v, "hi");
        // Numbers given to decode are read as their text.
        let v: f64 = eval(&lua, "return cjson.decode(12)");
        assert_eq!(v, 12.0);
        let null: bool = eval(&lua, "return cjson.decode('null') == cjson.null");
        assert!(null);
        let n: (f64, f64, f64) = eval(&lua, "return cjson.decode('[1e400, -0, 0.1]')[1], 1, 1");
        assert_eq!(n.0, f64::INFINITY);
    }

    #[test]
    fn decodes_string_escapes() {
        let lua = lua();
        let s: LuaString = eval(
            &lua,
            r#"return cjson.decode('"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\u0000"')"#,
        );
        assert_eq!(&s.as_bytes()[..], "\"\\/\u{8}\u{c}\n\r\tAé€😀\0".as_bytes());
        // Raw bytes, even control characters and invalid UTF-8, are kept.
        let s: LuaString = eval(&lua, "return cjson.decode('\"\\1\\255\"')");
        assert_eq!(&s.as_bytes()[..], b"\x01\xff");
    }

    #[test]
    fn decode_errors() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("''", "Expected value but found T_END at character 1"),
            (
                "'x'",
                "Expected value but found invalid token at character 1",
            ),
            (
                "'nul'",
                "Expected value but found invalid token at character 1",
            ),
            (
                "'[1,]'",
                "Expected value but found T_ARR_END at character 4",
            ),
            (
                "'[1 2]'",
                "Expected comma or array end but found T_NUMBER at character 4",
            ),
            (
                "'{\"a\" 1}'",
                "Expected colon but found T_NUMBER at character 6",
            ),
            (
                "'{1: 2}'",
                "Expected object key string but found T_NUMBER at character 2",
            ),
            (
                "'{\"a\": 1,}'",
                "Expected object key string but found T_OBJ_END at character 9",
            ),
            (
                "'{\"a\": 1 \"b\"}'",
                "Expected comma or object end but found T_STRING at character 9",
            ),
            (
                "'[1] 2'",
                "Expected the end but found T_NUMBER at character 5",
            ),
            (
                "'[1'",
                "Expected comma or array end but found T_END at character 3",
            ),
            (
                "'\"abc'",
                "Expected value but found unexpected end of string at character 5",
            ),
            (
                "'\"a\\\\x\"'",
                "Expected value but found invalid escape code at character 3",
            ),
            (
                "'\"\\\\u12\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'\"\\\\udc00\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'\"\\\\ud800x\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'\"\\\\ud800\\\\u0041\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'-'",
                "Expected value but found invalid number at character 1",
            ),
            (
                "'+'",
                "Expected value but found invalid number at character 1",
            ),
            (
                "'1e'",
                "Expected the end but found invalid token at character 2",
            ),
            (
                "'.5'",
                "Expected value but found invalid token at character 1",
            ),
            ("'\\0 1'", "JSON parser does not support UTF-16 or UTF-32"),
            ("'1\\0'", "JSON parser does not support UTF-16 or UTF-32"),
        ];
        for (arg, want) in cases {
            assert_eq!(
                error_of(&lua, &format!("cjson.decode({arg})")),
                *want,
                "{arg}"
            );
        }
        assert_eq!(
            error_of(&lua, "cjson.decode()"),
            "bad argument #1 to 'decode' (expected 1 argument)"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode({})"),
            "bad argument #1 to 'decode' (string expected, got table)"
        );
        // A NUL byte ends the text, as in lua-cjson's C string handling.
        let v: f64 = eval(&lua, "return cjson.decode('[7]\\0garbage')[1]");
        assert_eq!(v, 7.0);
    }

    #[test]
    fn decode_number_leniency() {
        let lua = lua();
        let cases: &[(&str, f64)] = &[
            ("'0x10'", 16.0),
            ("'-0x10'", -16.0),
            ("'0x1p4'", 16.0),
            ("'0x.8'", 0.5),
            ("'+5'", 5.0),
            ("'007'", 7.0),
            ("'1.'", 1.0),
            ("'-.5'", -0.5),
            ("'1E+2'", 100.0),
            ("'Infinity'", f64::INFINITY),
            ("'-inf'", f64::NEG_INFINITY),
        ];
        for (arg, want) in cases {
            let got: f64 = eval(&lua, &format!("return cjson.decode({arg})"));
            assert_eq!(got, *want, "{arg}");
        }
        let nan: bool = eval(&lua, "local n = cjson.decode('NaN') return n ~= n");
        assert!(nan);
        let nan: bool = eval(
            &lua,
            "local n = cjson.decode('[nan(123)]')[1] return n ~= n",
        );
        assert!(nan);
        let off: bool = eval(&lua, "return cjson.decode_invalid_numbers(false)");
        assert!(!off);
        for arg in ["'0x10'", "'+5'", "'007'", "'NaN'", "'-Infinity'"] {
            let message = error_of(&lua, &format!("cjson.decode({arg})"));
            assert!(message.contains("but found invalid"), "{arg}: {message}");
        }
        assert_eq!(
            error_of(&lua, "cjson.decode('007')"),
            "Expected value but found invalid number at character 1"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode('inf')"),
            "Expected value but found invalid token at character 1"
        );
        let v: f64 = eval(&lua, "return cjson.decode('-0.5e1')");
        assert_eq!(v, -5.0);
    }

    #[test]
    fn decode_nesting_limit() {
        let lua = lua();
        let ok: usize = eval(
            &lua,
            "local v = cjson.decode(string.rep('[', 1000) .. string.rep(']', 1000))
             local n = 0 while type(v) == 'table' do n = n + 1 v = v[1] end return n",
        );
        assert_eq!(ok, 1000);
        assert_eq!(
            error_of(
                &lua,
                "cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001))"
            ),
            "Found too many nested data structures (1001) at character 1001"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode(string.rep('{\"a\":', 1001))"),
            "Found too many nested data structures (1001) at character 5001"
        );
        let _: f64 = eval(&lua, "return cjson.decode_max_depth(2)");
        assert_eq!(
            error_of(&lua, "cjson.decode('[[[1]]]')"),
            "Found too many nested data structures (3) at character 3"
        );
        // Raised far, nesting stops where lua-cjson's Lua C stack runs out.
        let _: f64 = eval(&lua, "return cjson.decode_max_depth(2147483647)");
        assert_eq!(
            error_of(&lua, "cjson.decode(string.rep('[', 1000000))"),
            "Found too many nested data structures (7999) at character 7999"
        );
        assert_eq!(
            error_of(&lua, "cjson.decode(string.rep('{\"\":', 1000000))"),
            "Found too many nested data structures (4000) at character 15997"
        );
        let depth: usize = eval(
            &lua,
            "local v = cjson.decode(string.rep('[', 7998) .. string.rep(']', 7998))
             local n = 0 while type(v) == 'table' do n = n + 1 v = v[1] end return n",
        );
        assert_eq!(depth, 7998);
    }

    /// A 10 MB document decodes correctly (linear work; never timed).
    #[test]
    fn decodes_a_big_document() {
        let lua = lua();
        let ok: bool = eval(
            &lua,
            r#"
            local parts = {}
            for i = 1, 200000 do
                parts[i] = string.format('{"id":%d,"name":"user\\/%d","tags":["a","b"],"ok":true}', i, i)
            end
            local text = "[" .. table.concat(parts, ",") .. "]"
            assert(#text > 10 * 1000 * 1000, #text)
            local v = cjson.decode(text)
            if #v ~= 200000 then return false end
            for _, i in ipairs({1, 777, 200000}) do
                local e = v[i]
                if e.id ~= i or e.name ~= "user/" .. i or e.tags[2] ~= "b" or e.ok ~= true then
                    return false
                end
            end
            local big = string.rep("x", 10 * 1000 * 1000)
            return cjson.decode(cjson.encode(big)) == big
                and #cjson.encode(v) == #text
            "#,
        );
        assert!(ok);
    }

    /// `luaL_error`'s position prefix: the calling line, none from C (`pcall`), and none
    /// after a tail call (which drops the caller's frame; Redis would name line 2 there).
    #[test]
    fn errors_name_the_calling_line() {
        let lua = lua();
        let script = |code: &str| -> (String, String, String) {
            lua.load(code).set_name("=script").eval().unwrap()
        };
        let (called, from_c, tail) = script(
            "local function called() local v = cjson.decode('x') return v end
             local function tail()
               return cjson.decode('x')
             end
             return select(2, pcall(called)), select(2, pcall(cjson.decode, 'x')),
               select(2, pcall(tail))",
        );
        let message = "Expected value but found invalid token at character 1";
        assert_eq!(called, format!("script:1: {message}"));
        assert_eq!(from_c, message);
        assert_eq!(tail, message);
        let (named, unnamed, method) = script(
            "local function f() local depth = cjson.encode_max_depth
               local v = depth(0) return v end
             return select(2, pcall(f)), select(2, pcall(cjson.encode_max_depth, 0)),
               select(2, pcall(function() local v = cjson:decode() return v end))",
        );
        let range = "(expected integer between 1 and 2147483647)";
        assert_eq!(
            named,
            format!("script:2: bad argument #1 to 'depth' {range}")
        );
        assert_eq!(unnamed, format!("bad argument #1 to '?' {range}"));
        assert_eq!(
            method,
            "script:4: calling 'decode' on bad self (string expected, got table)"
        );
    }

    /// Decoding costs memory in proportion to the input: a 5 MB array of 2.5M numbers takes
    /// what its Lua table needs (16 bytes an element, doubled at worst while growing), and
    /// the decoder holds no per-element handles.
    #[test]
    fn decoding_memory_is_linear() {
        let lua = lua();
        let text: LuaString = eval(&lua, "return '[' .. string.rep('1,', 2500000) .. '1]'");
        let text_len = text.as_bytes().len();
        lua.gc_collect().unwrap();
        let before = lua.used_memory();
        let decoded: Table = lua
            .globals()
            .get::<Table>("cjson")
            .unwrap()
            .get::<Function>("decode")
            .unwrap()
            .call(text)
            .unwrap();
        let after = lua.used_memory();
        assert_eq!(decoded.raw_len(), 2_500_001);
        let grown = after.saturating_sub(before);
        assert!(
            grown < 16 * text_len,
            "{grown} bytes for {text_len} bytes of JSON"
        );
    }

    #[test]
    fn null_is_a_null_lightuserdata_equal_to_itself() {
        let lua = lua();
        let v: (bool, String) = eval(
            &lua,
            "return cjson.null == cjson.decode('null'), type(cjson.null)",
        );
        assert_eq!(v, (true, "userdata".to_string()));
        let null: Value = eval(&lua, "return cjson.null");
        assert!(matches!(null, Value::LightUserData(p) if p.0.is_null()));
    }
}
