//! `INFO [section ...]`: server, clients, memory, persistence, stats, replication, cpu,
//! modules, commandstats, errorstats, latencystats, sessions, cluster and keyspace, with Redis's
//! field names so that monitoring tools and client libraries read them unchanged.

use std::fmt::Write;

use sessiond_protocol::cmd::Info;
use sessiond_protocol::Frame;

use super::client::verbatim;
use super::connection::REDIS_COMPAT_VERSION;
use super::Ctx;
use crate::shared::Shared;
use crate::stats::Stats;
use std::sync::atomic::AtomicU64;

use crate::store::{SessionStats, Store};

/// The sections of a bare INFO (and of `default`), as Redis 7's.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// The percentiles of `latencystats`, as Redis's default `latency-tracking-info-percentiles`.
const PERCENTILES: [(&str, f64); 3] = [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)];

/// Answers INFO.
pub fn info(ctx: &mut Ctx<'_>, cmd: Info) -> Frame {
    verbatim(render(ctx.shared, &cmd.sections))
}

/// The INFO text for the sections asked (none: the default set).
pub fn render(shared: &Shared, asked: &[String]) -> String {
    // `all` is every section but the modules' own (sessiond has none), `everything` all.
    let everything = asked.iter().any(|s| s == "all" || s == "everything");
    let wanted = |name: &str| {
        everything
            || (asked.is_empty() && DEFAULT_SECTIONS.contains(&name))
            || asked
                .iter()
                .any(|s| s == name || (s == "default" && DEFAULT_SECTIONS.contains(&name)))
    };
    let mut out = String::new();
    let mut section = |name: &str, title: &str, body: &dyn Fn(&mut String)| {
        if wanted(name) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let _ = write!(out, "# {title}\r\n");
            body(&mut out);
        }
    };
    // Server-wide figures sum over the databases; the keyspace section has one line each.
    let store = &shared.dbs;
    let uptime = shared.started.elapsed().as_secs();
    section("server", "Server", &|out| {
        let now_us = store.now_ms() * 1000;
        let _ = write!(
            out,
            "redis_version:{REDIS_COMPAT_VERSION}\r\nsessiond_version:{}\r\nredis_git_sha1:00000000\r\n\
             redis_git_dirty:0\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\n\
             monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\n\
             process_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\ntls_port:{}\r\nserver_time_usec:{now_us}\r\n\
             uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\n\
             io_threads_active:0\r\nexecutable:{}\r\nconfig_file:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            shared.run_id,
            shared.local_addr.port(),
            shared.tls_local_addr.map_or(0, |addr| addr.port()),
            uptime / 86_400,
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            shared.config.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        );
    });
    section("clients", "Clients", &|out| {
        let _ = write!(
            out,
            "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nblocked_clients:0\r\n\
             tracking_clients:0\r\nclients_in_timeout_table:0\r\ntotal_blocking_keys:0\r\n",
            shared.clients.len(),
            shared.live.maxclients()
        );
    });
    section("memory", "Memory", &|out| {
        // `used_memory` is the process's (see `crate::process`); the dataset's is the store's
        // accounting, which `maxmemory` holds.
        let (memory, peak) = shared.sample_memory();
        let (used, rss) = (memory.anonymous, memory.rss);
        let dataset = store.used_memory();
        let total = crate::process::total_system_memory();
        let max = shared.live.maxmemory();
        // The queue is the server's, shared by the databases.
        let lazyfree = store.first().lazyfree_counts();
        let percent = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let _ = write!(
            out,
            "used_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
             used_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\n\
             used_memory_peak_perc:{:.2}%\r\nused_memory_overhead:{}\r\nused_memory_dataset:{dataset}\r\n\
             used_memory_dataset_perc:{:.2}%\r\ntotal_system_memory:{total}\r\n\
             total_system_memory_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\n\
             maxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_fragmentation_bytes:{}\r\n\
             mem_allocator:{}\r\nexpiry_index_entries:{}\r\nlazyfree_pending_objects:{}\r\n\
             lazyfreed_objects:{}\r\n",
            human(used),
            human(rss),
            human(peak),
            percent(used, peak),
            used.saturating_sub(dataset),
            percent(dataset, used),
            human(total),
            human(max),
            shared.live.maxmemory_policy().name(),
            if used == 0 { 0.0 } else { rss as f64 / used as f64 },
            rss as i64 - used as i64,
            if cfg!(feature = "mimalloc") { "mimalloc" } else { "libc" },
            store.sum(|db| db.expiry_index_len() as u64),
            lazyfree.0,
            lazyfree.1
        );
        let _ = write!(
            out,
            "used_memory_lua:{}\r\nused_memory_lua_human:{}\r\nnumber_of_cached_scripts:{}\r\n",
            shared.scripts.lua_memory(),
            human(shared.scripts.lua_memory()),
            shared.scripts.len()
        );
    });
    section("persistence", "Persistence", &|out| {
        let persistence = &shared.persistence;
        let status = persistence.status();
        // The journal of the save in progress (one record per key written since it began).
        let journal = store.journal().held();
        // Both fields from one reading: a BGSAVE is claimed (in progress) before its thread
        // records its start, and a save clears its start before it releases the claim; in
        // those moments the save is in progress for 0 s, not "none running" (-1).
        let in_progress = persistence.in_progress();
        // A replica loading a full sync (its clients get LOADING meanwhile).
        let loading = shared.repl.loading();
        let current = match (in_progress, status.current_started_ms) {
            (false, _) => -1,
            (true, None) => 0,
            (true, Some(started)) => (store.now_ms().saturating_sub(started) / 1000) as i64,
        };
        let _ = write!(
            out,
            "loading:{}\r\nasync_loading:0\r\npersistence_enabled:{}\r\nsnapshot_file:{}\r\n\
             rdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_saves:{}\r\n\
             rdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\n\
             rdb_current_bgsave_time_sec:{current}\r\nrdb_last_save_duration_ms:{}\r\n\
             rdb_last_save_size_bytes:{}\r\nrdb_last_save_records:{}\r\nrdb_last_error:{}\r\n\
             rdb_journal_records:{}\r\nrdb_journal_bytes:{}\r\n",
            u8::from(loading),
            u8::from(persistence.config().is_some()),
            persistence
                .config()
                .map(|c| c.path().display().to_string())
                .unwrap_or_default(),
            persistence.changes_since_save(),
            u8::from(in_progress),
            status.saves,
            status.last_save_unix_s,
            if status.last_ok { "ok" } else { "err" },
            if status.saves == 0 {
                -1
            } else {
                status.last_duration.as_secs() as i64
            },
            status.last_duration.as_millis(),
            status.last_bytes,
            status.last_records,
            status
                .last_error
                .as_deref()
                .unwrap_or("")
                .replace(['\r', '\n'], " "),
            journal.records,
            journal.bytes,
        );
        aof_info(out, persistence);
        if loading {
            shared.repl.loading_info(out, store.now_ms());
        }
    });
    section("stats", "Stats", &|out| {
        let s = &shared.stats;
        let traffic = s.traffic();
        let _ = write!(
            out,
            "total_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\n\
             expired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\
             total_error_replies:{}\r\ntotal_error_replies_protocol:{}\r\nacl_access_denied_auth:{}\r\n\
             acl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\n\
             acl_access_denied_channel:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n\
             pubsub_shardchannels:{}\r\nunauthenticated_limit_disconnections:{}\r\nidle_timeouts:{}\r\n\
             client_output_buffer_limit_disconnections:{}\r\ntls_handshake_failures:{}\r\n\
             auth_failure_disconnections:{}\r\nauth_timeouts:{}\r\nsync_full:{}\r\n\
             sync_partial_ok:{}\r\nsync_partial_err:{}\r\n",
            Stats::get(&s.connections_received),
            traffic.commands,
            traffic.input_bytes,
            traffic.output_bytes,
            Stats::get(&s.rejected_connections),
            store.sum(Store::expired_keys),
            store.sum(Store::evicted_keys),
            traffic.hits,
            traffic.misses,
            s.commands.total_error_replies(),
            Stats::get(&s.protocol_errors),
            Stats::get(&s.auth_failures),
            Stats::get(&s.acl_denied_commands),
            Stats::get(&s.acl_denied_keys),
            Stats::get(&s.acl_denied_channels),
            shared.pubsub.channel_count(false),
            shared.pubsub.numpat(),
            shared.pubsub.channel_count(true),
            Stats::get(&s.unauthenticated_limit_disconnections),
            Stats::get(&s.idle_timeouts),
            Stats::get(&s.client_output_buffer_limit_disconnections),
            Stats::get(&s.tls_handshake_failures),
            Stats::get(&s.auth_failure_disconnections),
            Stats::get(&s.auth_timeouts),
            Stats::get(&shared.repl.sync_full),
            Stats::get(&shared.repl.sync_partial_ok),
            Stats::get(&shared.repl.sync_partial_err),
        );
    });
    section("replication", "Replication", &|out| {
        let feed = shared.dbs.feed();
        let (first, histlen) = feed.backlog_range();
        let figures = crate::role::FeedFigures {
            offset: feed.end_offset(),
            backlog_size: feed.backlog_size(),
            // Redis counts from 1.
            first_byte_offset: first + 1,
            histlen,
        };
        shared.repl.info(out, &figures, shared.dbs.now_ms());
    });
    section("cpu", "CPU", &|out| {
        let cpu = crate::process::cpu_time();
        let seconds = |d: std::time::Duration| format!("{}.{:06}", d.as_secs(), d.subsec_micros());
        let _ = write!(
            out,
            "used_cpu_sys:{}\r\nused_cpu_user:{}\r\nused_cpu_sys_children:{}\r\n\
             used_cpu_user_children:{}\r\n",
            seconds(cpu.system),
            seconds(cpu.user),
            seconds(cpu.children_system),
            seconds(cpu.children_user),
        );
    });
    section("modules", "Modules", &|_| {});
    let figures = if wanted("commandstats") || wanted("latencystats") {
        shared.stats.commands.figures()
    } else {
        Vec::new()
    };
    section("commandstats", "Commandstats", &|out| {
        for f in &figures {
            let per_call = if f.calls == 0 {
                0.0
            } else {
                f.usec as f64 / f.calls as f64
            };
            let _ = write!(
                out,
                "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},\
                 failed_calls={}\r\n",
                f.name, f.calls, f.usec, f.rejected, f.failed
            );
        }
    });
    section("errorstats", "Errorstats", &|out| {
        for (prefix, count) in shared.stats.commands.errors() {
            let _ = write!(out, "errorstat_{prefix}:count={count}\r\n");
        }
    });
    section("latencystats", "Latencystats", &|out| {
        for f in figures.iter().filter(|f| f.calls > 0) {
            let _ = write!(out, "latency_percentiles_usec_{}:", f.name);
            for (index, (name, p)) in PERCENTILES.iter().enumerate() {
                let separator = if index == 0 { "" } else { "," };
                let _ = write!(out, "{separator}{name}={:.3}", f.percentile_usec(*p));
            }
            out.push_str("\r\n");
        }
    });
    section("sessions", "Sessions", &|out| {
        let sum = |counter: fn(&SessionStats) -> &AtomicU64| {
            store.sum(|db| SessionStats::get(counter(db.session_stats())))
        };
        let live = store.sum(|db| {
            db.session_stats()
                .live
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(0) as u64
        });
        let _ = write!(
            out,
            "sessions:{}\r\nsession_users:{}\r\nsessions_created:{}\r\nsessions_expired:{}\r\n\
             sessions_destroyed:{}\r\nsessions_regenerated:{}\r\nsession_version_conflicts:{}\r\n\
             session_idle_default_ms:{}\r\nsession_absolute_default_ms:{}\r\nsession_max_per_user:{}\r\n",
            live,
            store.sum(|db| db.session_users() as u64),
            sum(|s| &s.created),
            sum(|s| &s.expired),
            sum(|s| &s.destroyed),
            sum(|s| &s.regenerated),
            sum(|s| &s.conflicts),
            shared.live.session_idle().as_millis(),
            shared.live.session_absolute().as_millis(),
            shared.live.session_max_per_user(),
        );
    });
    section("cluster", "Cluster", &|out| {
        out.push_str("cluster_enabled:0\r\n");
    });
    section("keyspace", "Keyspace", &|out| {
        // As Redis: one line per database that holds keys.
        for (index, db) in store.indexed() {
            let keys = db.len();
            if keys > 0 {
                let _ = write!(
                    out,
                    "db{index}:keys={keys},expires={},avg_ttl=0\r\n",
                    db.volatile_len()
                );
            }
        }
    });
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// INFO persistence's `aof_*` fields, Redis's (the size and fsync ones only while the log is
/// on, as Redis prints them), and sessiond's `aof_stream_offset` (the change feed's end: every
/// change so far) and `aof_fsync_offset` (what of it is fsynced), which tell a script when a
/// write is on disk.
fn aof_info(out: &mut String, persistence: &crate::persist::Persistence) {
    let secs = |d: Option<std::time::Duration>| d.map_or(-1, |d| d.as_secs() as i64);
    let Some(aof) = persistence.aof() else {
        // Off: the history of the last log turned off (CONFIG SET appendonly no), as Redis.
        let status = persistence.aof_history();
        let _ = write!(
            out,
            "aof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n\
             aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:-1\r\n\
             aof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_last_write_status:ok\r\n\
             aof_last_cow_size:0\r\n",
            secs(status.last_duration),
            if status.last_ok { "ok" } else { "err" },
            status.rewrites,
        );
        return;
    };
    let (rewriting, scheduled) = aof.rewrite_state();
    let status = aof.rewrite_status();
    let _ = write!(
        out,
        "aof_enabled:1\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\n\
         aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{}\r\n\
         aof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_last_write_status:{}\r\n\
         aof_last_cow_size:0\r\naof_current_size:{}\r\naof_base_size:{}\r\n\
         aof_pending_rewrite:{}\r\naof_buffer_length:{}\r\naof_pending_bio_fsync:{}\r\n\
         aof_delayed_fsync:{}\r\naof_stream_offset:{}\r\naof_fsync_offset:{}\r\n",
        u8::from(rewriting),
        u8::from(scheduled),
        secs(status.last_duration),
        secs(status.started.map(|s| s.elapsed())),
        if status.last_ok { "ok" } else { "err" },
        status.rewrites,
        if aof.write_failed() { "err" } else { "ok" },
        aof.size(),
        aof.base_size(),
        u8::from(scheduled),
        aof.buffered(),
        u8::from(aof.fsync_pending()),
        aof.delayed_fsyncs(),
        aof.feed().end_offset(),
        aof.feed().durable().offset.min(aof.feed().end_offset()),
    );
}
