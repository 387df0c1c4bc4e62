//! Runs one script: finds or compiles its function in this thread's interpreter, then calls it
//! in one atomic block of the store.
//!
//! The block holds the map shards of the keys the script declares (KEYS), as EXEC's holds its
//! commands'. Redis lets a script touch keys it did not declare; before `redis.call` runs a
//! command whose key's shard the block does not hold (`call.rs`):
//! - if the script has written nothing yet, it is stopped and run again from the start holding
//!   every shard, and its SHA is remembered so that its next runs hold every shard at once;
//! - if it has written, the missing shard is taken if it is free at that instant
//!   ([`crate::store::Store::block_try_hold`], never waiting: waiting out of the ascending
//!   order could deadlock against another block); if another client holds it, the command
//!   fails with an error the script sees (`redis.call` raises it). That needs another client
//!   on that very shard at that instant, and a script that writes before it reads an
//!   undeclared key.
//!
//! Inside MULTI, EXEC holds every shard when EVAL is queued (EVAL declares no key positions).

use std::cell::RefCell;
use std::sync::Arc;

use bytes::BytesMut;
use mlua::Value;
use sessiond_protocol::{Frame, ProtocolVersion};

use super::call::{Current, Hooked, Running, Stop, SCRATCH_KEPT};
use super::convert;
use super::memory::Unlimited;
use super::vm::Vm;
use super::{Caller, Interrupt, Ran, ScriptCall, Watchdog, NOSCRIPT};
use crate::shared::Shared;
use crate::stats::commands::Tally;
use crate::store::Store;

thread_local! {
    /// This thread's interpreter, built on first use.
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `call` as `caller`; `watchdog` is told what the script holds and may stop it. Callable
/// on any thread: each thread has its own interpreter.
pub fn run(
    shared: &Arc<Shared>,
    call: &ScriptCall,
    caller: &Caller,
    watchdog: &Arc<dyn Watchdog + Send + Sync>,
) -> Ran {
    VM.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Ran::Reply(Frame::error(
                "ERR a script is already running on this thread",
            ));
        };
        if slot.is_none() {
            match Vm::new(caller.host.redis_version) {
                Ok(vm) => *slot = Some(vm),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the Lua interpreter");
                    return Ran::Reply(Frame::error("ERR the Lua interpreter could not start"));
                }
            }
        }
        let Some(vm) = slot.as_mut() else {
            return Ran::Reply(Frame::error("ERR the Lua interpreter could not start"));
        };
        run_in(vm, shared, call, caller, watchdog)
    })
}

fn run_in(
    vm: &mut Vm,
    shared: &Arc<Shared>,
    call: &ScriptCall,
    caller: &Caller,
    watchdog: &Arc<dyn Watchdog + Send + Sync>,
) -> Ran {
    let scripts = &shared.scripts;
    let generation = scripts.generation();
    if generation != vm.generation {
        vm.functions.clear();
        let _ = vm.lua.gc_collect();
        vm.generation = generation;
    }
    // EVALSHA must find the script in the shared cache (it may have been evicted since this
    // thread compiled it).
    let known = call.body.is_some() || scripts.contains(&call.sha);
    let (function, flags) = match vm.functions.get(&call.sha) {
        Some((function, flags)) if known => (function.clone(), *flags),
        _ => {
            let body = match &call.body {
                Some(body) => body.clone(),
                None => match scripts.body(&call.sha) {
                    Some(body) => body,
                    None => return Ran::Reply(Frame::error(NOSCRIPT)),
                },
            };
            let (function, flags) = match vm.compile(&body) {
                Ok(compiled) => compiled,
                Err(reply) => return Ran::Reply(reply),
            };
            // Bounded by the shared cache: past twice its size (evicted scripts), start over.
            if vm.functions.len() > 2 * scripts.len() + 64 {
                vm.functions.clear();
            }
            vm.functions.insert(call.sha, (function.clone(), flags));
            if call.body.is_some() {
                scripts.add(call.sha, body, false);
            }
            (function, flags)
        }
    };
    // A script with a shebang is checked as a whole before it runs (Redis 7's
    // scriptPrepareForRun); one without, command by command.
    if !flags.compat && !flags.no_writes && call.read_only {
        return Ran::Reply(Frame::error(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    let read_only = call.read_only || flags.no_writes;
    let store = shared.dbs.db(caller.db);
    let in_block = Store::in_block();
    // Over `maxmemory`, write commands that add data are refused inside the script, as Redis
    // refuses them (eviction cannot run inside the block).
    let maxmemory = shared.live.maxmemory();
    let over_maxmemory = maxmemory > 0
        && !read_only
        && !flags.allow_oom
        && !in_block
        && !store.make_room(maxmemory, shared.live.maxmemory_policy(), now(shared));
    if over_maxmemory && !flags.compat {
        return Ran::Reply(Frame::error(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > \
             'maxmemory'",
        ));
    }
    let oom = over_maxmemory;
    let mut holds_all = scripts.holds_all(&call.sha);
    loop {
        let shards: Option<Vec<usize>> = if holds_all {
            None
        } else {
            Some(
                call.keys
                    .iter()
                    .map(|key| store.shard_of_key(key))
                    .collect(),
            )
        };
        watchdog.holding(shards.as_deref());
        let now_ms = now(shared);
        let running = Running {
            shared: Arc::clone(shared),
            store: Arc::clone(store),
            db: caller.db,
            client: Arc::clone(&caller.client),
            user: caller.user.clone(),
            version: ProtocolVersion::Resp2,
            host: caller.host,
            now_ms,
            read_only,
            oom,
            wrote: false,
            watchdog: Arc::clone(watchdog),
            tally: Tally::default(),
        };
        if let Some(mut current) = vm.lua.app_data_mut::<Current>() {
            current.running = Some(running);
        }
        if let Some(mut hooked) = vm.lua.app_data_mut::<Hooked>() {
            hooked.watchdog = Some(Arc::clone(watchdog));
            hooked.stop = None;
        }
        let outcome = store.atomic(shards.as_deref(), || {
            call_script(vm, &function, call, caller.version)
        });
        let stop = vm.lua.app_data_mut::<Hooked>().and_then(|mut hooked| {
            hooked.watchdog = None;
            hooked.stop.take()
        });
        let mut gc_stopped = false;
        let mut running = vm.lua.app_data_mut::<Current>().and_then(|mut current| {
            if current.scratch.capacity() > SCRATCH_KEPT {
                current.scratch = BytesMut::new();
            }
            gc_stopped = std::mem::take(&mut current.gc_stopped);
            current.running.take()
        });
        if let Some(running) = running.as_mut() {
            shared.stats.commands.absorb(&mut running.tally);
        }
        // Fails only if Lua cannot allocate at all (its limit is lifted), as setting them did.
        let _ = vm.reset_arguments(call.keys.len(), call.args.len());
        // A script may have stopped the collector (`collectgarbage('stop')`): not for the next.
        // Only then: in Lua 5.1 a restart sets the collector's threshold to the memory in use,
        // so that a cycle starts at the next allocation (restarting after every run made the
        // collector run without pause, a fifth of an EVALSHA).
        if gc_stopped {
            vm.lua.gc_restart();
        }
        if vm.lua.used_memory() > super::LUA_MEMORY_LIMIT / 2 {
            let _ = vm.lua.gc_collect();
        }
        let used = vm.lua.used_memory() as u64;
        scripts.lua_memory_moved(vm.reported_memory, used);
        vm.reported_memory = used;
        if stop.is_some() {
            // Back to the usual count after a stop (see `install_hook`).
            let _ = super::call::install_hook(&vm.lua, super::call::TICK_INSTRUCTIONS);
        }
        let wrote = running.as_ref().is_some_and(|r| r.wrote);
        match stop {
            None => return Ran::Reply(outcome.into_frame(&call.sha)),
            Some(Stop::Restart) if !holds_all && !wrote => {
                scripts.set_holds_all(&call.sha);
                if watchdog.restart_elsewhere() {
                    return Ran::Offload;
                }
                holds_all = true;
            }
            Some(Stop::Interrupted(Interrupt::Offload)) if !wrote => return Ran::Offload,
            Some(Stop::Interrupted(_)) => {
                return Ran::Reply(outcome.killed(&call.sha));
            }
            Some(Stop::Restart) => return Ran::Reply(outcome.into_frame(&call.sha)),
        }
    }
}

/// The store's clock, Unix ms.
fn now(shared: &Shared) -> u64 {
    shared.dbs.now_ms()
}

/// What the script's call came to, converted inside the block.
enum Outcome {
    /// Its result, as the reply.
    Returned(Frame),
    /// It raised an error: the message and the line, when the handler found it.
    Raised { message: Vec<u8>, line: Option<i64> },
    /// Something failed outside the script (an interpreter error).
    Failed(String),
}

impl Outcome {
    fn into_frame(self, sha: &super::Sha) -> Frame {
        match self {
            Outcome::Returned(frame) => frame,
            Outcome::Raised { message, line } => {
                let mut text = message;
                if let Some(line) = line {
                    text.extend_from_slice(b" script: ");
                    text.extend_from_slice(sha);
                    text.extend_from_slice(format!(", on @user_script:{line}.").as_bytes());
                }
                Frame::Error(one_line(text).into())
            }
            Outcome::Failed(message) => Frame::error(format!(
                "ERR Error running script {}, {}",
                String::from_utf8_lossy(sha),
                message
                    .chars()
                    .take(100)
                    .collect::<String>()
                    .replace(['\r', '\n'], " ")
            )),
        }
    }

    /// Redis 7.0's reply to a script stopped by SCRIPT KILL.
    fn killed(self, sha: &super::Sha) -> Frame {
        let line = match self {
            Outcome::Raised { line, .. } => line,
            _ => None,
        };
        Outcome::Raised {
            message: b"ERR Script killed by user with SCRIPT KILL...".to_vec(),
            line,
        }
        .into_frame(sha)
    }
}

fn one_line(mut text: Vec<u8>) -> Vec<u8> {
    for b in &mut text {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    text
}

/// Sets KEYS and ARGV and calls the function under the error handler.
fn call_script(
    vm: &Vm,
    function: &mlua::Function,
    call: &ScriptCall,
    version: ProtocolVersion,
) -> Outcome {
    let lua = &vm.lua;
    // The tables are empty (`Vm::reset_arguments`).
    let set = |table: &mlua::Table, items: &[bytes::Bytes]| -> mlua::Result<()> {
        for (i, item) in items.iter().enumerate() {
            table.raw_set(i + 1, lua.create_string(item)?)?;
        }
        Ok(())
    };
    let unlimited = Unlimited::new(lua);
    if let Err(e) = set(&vm.keys, &call.keys).and_then(|()| set(&vm.args, &call.args)) {
        return Outcome::Failed(e.to_string());
    }
    drop(unlimited);
    let result: mlua::Result<(bool, Value)> =
        vm.xpcall.call((function.clone(), vm.handler.clone()));
    let _unlimited = Unlimited::new(lua);
    match result {
        Ok((true, value)) => Outcome::Returned(convert::lua_to_reply(&value, version)),
        Ok((false, Value::Table(error))) => {
            let message = match error.raw_get::<Value>("err") {
                Ok(Value::String(s)) => s.as_bytes().to_vec(),
                _ => b"ERR unknown error".to_vec(),
            };
            let line = match error.raw_get::<Value>("line") {
                Ok(Value::Integer(line)) => Some(line),
                Ok(Value::Number(line)) => Some(line as i64),
                _ => None,
            };
            // Redis's reply keeps the message's own code (`-%s`).
            Outcome::Raised { message, line }
        }
        Ok((false, other)) => Outcome::Failed(
            other
                .to_string()
                .unwrap_or_else(|_| "execution failure".into()),
        ),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Whether `body` compiles (SCRIPT LOAD refuses a script that does not, as Redis); the error
/// reply when it does not.
pub fn check_compiles(body: &[u8], host: &super::Host) -> Result<(), Frame> {
    VM.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Err(Frame::error(
                "ERR a script is already running on this thread",
            ));
        };
        if slot.is_none() {
            *slot = Vm::new(host.redis_version).ok();
        }
        let Some(vm) = slot.as_ref() else {
            return Err(Frame::error("ERR the Lua interpreter could not start"));
        };
        vm.compile(body).map(drop)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::auth::Auth;
    use crate::persist::Persistence;
    use crate::script::{Host, ScriptConn, Sha};

    fn shared() -> Arc<Shared> {
        let (clock, _manual) = crate::Clock::manual(1_000_000);
        let store = Arc::new(crate::store::Databases::new(clock, 1));
        let persistence = Arc::new(Persistence::new(None, Arc::clone(&store)));
        let addr = "127.0.0.1:1".parse().unwrap();
        Arc::new(Shared::new(
            crate::Config::default(),
            store,
            persistence,
            Auth::default(),
            addr,
            None,
            None,
        ))
    }

    /// Runs commands through a stand-in for the commands' layer: SET and GET on the store.
    fn dispatch(conn: &mut ScriptConn<'_>, command: sessiond_protocol::Command) -> Option<Frame> {
        use sessiond_protocol::Command;
        let store = conn.store;
        Some(match command {
            Command::Set(set) => {
                let value = set.value.clone();
                store.upsert(&set.key, conn.now_ms, |_| {
                    let value = crate::store::Value::Str(value);
                    (Some(crate::store::Entry::new(value, 0)), ())
                });
                Frame::ok()
            }
            _ => Frame::error("ERR not in this test"),
        })
    }

    const HOST: Host = Host {
        dispatch,
        redis_version: "7.2.0",
    };

    fn caller(shared: &Shared) -> Caller {
        let addr = "127.0.0.1:2".parse().unwrap();
        Caller {
            client: shared.clients.register(addr, addr),
            user: None,
            version: ProtocolVersion::Resp2,
            db: 0,
            host: HOST,
        }
    }

    fn call(body: &str, keys: &[&str]) -> ScriptCall {
        ScriptCall {
            sha: crate::script::sha1_hex(body.as_bytes()),
            body: Some(bytes::Bytes::copy_from_slice(body.as_bytes())),
            keys: keys
                .iter()
                .map(|k| bytes::Bytes::copy_from_slice(k.as_bytes()))
                .collect(),
            args: Vec::new(),
            read_only: false,
        }
    }

    /// Records what the runner tells it; interrupts at the `interrupt_at`th tick.
    #[derive(Default)]
    struct Recorder {
        holding: Mutex<Vec<Option<Vec<usize>>>>,
        ticks: AtomicUsize,
        wrote: AtomicUsize,
        interrupt: Option<(usize, Interrupt)>,
    }

    impl Watchdog for Recorder {
        fn holding(&self, shards: Option<&[usize]>) {
            self.holding
                .lock()
                .unwrap()
                .push(shards.map(<[usize]>::to_vec));
        }
        fn tick(&self) -> Result<(), Interrupt> {
            let n = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
            match self.interrupt {
                Some((at, interrupt)) if n >= at => Err(interrupt),
                _ => Ok(()),
            }
        }
        fn wrote(&self) -> Result<(), Interrupt> {
            self.wrote.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn run_with(
        shared: &Arc<Shared>,
        call: &ScriptCall,
        recorder: Recorder,
    ) -> (Ran, Arc<Recorder>) {
        let recorder = Arc::new(recorder);
        let watchdog: Arc<dyn Watchdog + Send + Sync> = recorder.clone();
        let ran = run(shared, call, &caller(shared), &watchdog);
        (ran, recorder)
    }

    fn reply(ran: Ran) -> Frame {
        match ran {
            Ran::Reply(frame) => frame,
            Ran::Offload => panic!("offloaded"),
        }
    }

    #[test]
    fn the_watchdog_hears_what_the_script_holds_its_ticks_and_its_first_write() {
        let shared = shared();
        let body = "for i = 1, 10000 do end
            redis.call('SET', KEYS[1], 'a') redis.call('SET', KEYS[1], 'b')
            redis.call('SET', 'undeclared', 'c') return 1";
        let (ran, recorder) = run_with(&shared, &call(body, &["k"]), Recorder::default());
        assert_eq!(reply(ran), Frame::Integer(1));
        let shard = shared.dbs.first().shard_of_key(b"k");
        // Undeclared after a write: the free shard was added.
        let mut both = vec![shard, shared.dbs.first().shard_of_key(b"undeclared")];
        both.sort_unstable();
        both.dedup();
        assert_eq!(
            *recorder.holding.lock().unwrap(),
            vec![Some(vec![shard]), Some(both)]
        );
        assert!(recorder.ticks.load(Ordering::Relaxed) >= 10);
        assert_eq!(recorder.wrote.load(Ordering::Relaxed), 1);

        // Undeclared before any write: it restarts holding every shard, then always does.
        let body = "redis.call('SET', 'elsewhere', 'x') return 2";
        let (ran, recorder) = run_with(&shared, &call(body, &[]), Recorder::default());
        assert_eq!(reply(ran), Frame::Integer(2));
        assert_eq!(*recorder.holding.lock().unwrap(), vec![Some(vec![]), None]);
        let (_, recorder) = run_with(&shared, &call(body, &[]), Recorder::default());
        assert_eq!(*recorder.holding.lock().unwrap(), vec![None]);
    }

    #[test]
    fn what_a_script_does_to_keys_and_argv_does_not_reach_the_next() {
        let shared = shared();
        let first = "KEYS[1] = 'changed' KEYS.extra = 1 ARGV[5] = 'x'
            setmetatable(ARGV, {__index = function() return 'meta' end}) return #KEYS";
        let (ran, _) = run_with(&shared, &call(first, &["a", "b"]), Recorder::default());
        assert_eq!(reply(ran), Frame::Integer(2));
        let second = "return {#KEYS, KEYS[1], tostring(KEYS[2]), tostring(KEYS.extra), #ARGV,
            tostring(ARGV[5]), tostring(getmetatable(ARGV))}";
        let bulk = |s: &str| Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let expected = Frame::Array(vec![
            Frame::Integer(1),
            bulk("k"),
            bulk("nil"),
            bulk("nil"),
            Frame::Integer(0),
            bulk("nil"),
            bulk("nil"),
        ]);
        for _ in 0..2 {
            let (ran, _) = run_with(&shared, &call(second, &["k"]), Recorder::default());
            assert_eq!(reply(ran), expected);
        }
    }

    #[test]
    fn a_collector_a_script_stopped_runs_again_for_the_next() {
        let shared = shared();
        let stop = "collectgarbage('stop') return 1";
        let (ran, _) = run_with(&shared, &call(stop, &[]), Recorder::default());
        assert_eq!(reply(ran), Frame::Integer(1));
        // About 4 MB of garbage: a running collector keeps the growth well under 1 MB.
        let churn = "local before = collectgarbage('count')
            for i = 1, 100000 do local t = {} end
            return collectgarbage('count') - before < 1024";
        let (ran, _) = run_with(&shared, &call(churn, &[]), Recorder::default());
        assert_eq!(reply(ran), Frame::Integer(1));
    }

    #[test]
    fn a_killed_script_stops_with_redis_s_error_and_pcall_cannot_catch_it() {
        let shared = shared();
        let body = "while true do pcall(function() while true do end end) end";
        let killer = Recorder {
            interrupt: Some((3, Interrupt::Killed)),
            ..Recorder::default()
        };
        let call = call(body, &[]);
        let sha: Sha = call.sha;
        let (ran, _) = run_with(&shared, &call, killer);
        let Frame::Error(e) = reply(ran) else {
            panic!()
        };
        let text = String::from_utf8_lossy(&e).into_owned();
        assert!(
            text.starts_with(&format!(
                "ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.",
                String::from_utf8_lossy(&sha)
            )),
            "{text}"
        );
        // The interpreter is fine for the next script.
        let (ran, _) = run_with(
            &shared,
            &super::tests::call("return 5", &[]),
            Recorder::default(),
        );
        assert_eq!(reply(ran), Frame::Integer(5));
    }

    /// After a write, an undeclared key whose shard another client holds at that instant is
    /// an error the script sees (it cannot restart, and must not wait out of order).
    #[test]
    fn an_undeclared_key_on_a_busy_shard_after_a_write_is_an_error() {
        let shared = shared();
        let store = Arc::clone(shared.dbs.first());
        let busy = (0..)
            .map(|i| format!("busy:{i}"))
            .find(|key| store.shard_of_key(key.as_bytes()) != store.shard_of_key(b"mine"))
            .unwrap();
        let busy_shard = store.shard_of_key(busy.as_bytes());
        let (held, release) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let holder = {
            let (store, held, release) = (Arc::clone(&store), held.clone(), release.clone());
            std::thread::spawn(move || {
                store.atomic(Some(&[busy_shard]), || {
                    held.wait();
                    release.wait();
                });
            })
        };
        held.wait();
        let body = format!(
            "redis.call('SET', KEYS[1], 'v')
             local r = redis.pcall('SET', '{busy}', 'w')
             return r.err"
        );
        let (ran, _) = run_with(&shared, &call(&body, &["mine"]), Recorder::default());
        release.wait();
        holder.join().unwrap();
        let Frame::Bulk(error) = reply(ran) else {
            panic!("not the error message")
        };
        assert!(
            error.starts_with(b"ERR Script attempted to access a key it did not declare"),
            "{error:?}"
        );
    }

    #[test]
    fn a_long_script_is_offloaded_only_before_it_writes() {
        let shared = shared();
        let offload = || Recorder {
            interrupt: Some((2, Interrupt::Offload)),
            ..Recorder::default()
        };
        let (ran, _) = run_with(
            &shared,
            &call("for i = 1, 100000 do end return 1", &[]),
            offload(),
        );
        assert!(matches!(ran, Ran::Offload));
        let body = "redis.call('SET', KEYS[1], 'v') for i = 1, 100000 do end return 1";
        let (ran, _) = run_with(&shared, &call(body, &["k"]), offload());
        assert_eq!(reply(ran), Frame::Integer(1));
    }
}
