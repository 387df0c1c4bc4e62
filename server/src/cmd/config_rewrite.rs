//! `CONFIG REWRITE`: the settings CONFIG SET changes, written back into the TOML file the
//! server was started from (`--config`), with `toml_edit` so that the file keeps its comments,
//! its order and the way it wrote each value it still holds.
//!
//! A key the file has is replaced when the running value differs from it; a key it lacks is
//! added when the running value differs from the one the server started with (a value from a
//! flag or a variable is given again at the next start). A password (`requirepass`,
//! `masterauth`) is never added: a config file is often readable by more than the server, so
//! one changed at run time stays in `SESSIOND_PASSWORD` or `--requirepass-file`'s care. But
//! where the file holds one that CONFIG SET replaced, the running one takes its place (or the
//! key goes, if it was removed): a rotated password must not come back at the next start. The
//! file is replaced atomically
//! (a temporary file beside it, fsynced, renamed over it, then the directory fsynced), with the
//! old file's mode.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sessiond_protocol::units::{format_duration, format_size};
use toml_edit::{DocumentMut, Item, Value};

use crate::live::Live;
use crate::notify::EventFlags;
use crate::persist::aof::Fsync;
use crate::shared::Shared;

/// Redis's error when there is no file to rewrite.
pub const NO_CONFIG_FILE: &str = "ERR The server is running without a config file";

/// The settings CONFIG SET changes that are kept outside [`Live`]: the slow log's, the latency
/// monitor's and replication's.
struct Elsewhere {
    slowlog_us: i64,
    slowlog_len: u64,
    latency_ms: u64,
    read_only: bool,
    priority: i64,
    repl_timeout: Duration,
    ping_period: Duration,
    backlog: u64,
    announce: (Option<String>, u16),
    masteruser: Option<String>,
}

impl Elsewhere {
    /// As the server runs them now.
    fn running(shared: &Shared) -> Elsewhere {
        Elsewhere {
            slowlog_us: shared.slowlog.slower_than_us(),
            slowlog_len: shared.slowlog.max_len(),
            latency_ms: shared.latency.threshold_ms(),
            read_only: shared.repl.read_only(),
            priority: shared.repl.priority(),
            repl_timeout: shared.repl.timeout(),
            ping_period: shared.repl.ping_period(),
            announce: shared.repl.announce(),
            backlog: shared.dbs.feed().backlog_size(),
            masteruser: shared.repl.masteruser(),
        }
    }

    /// As `config` starts them.
    fn at_start(config: &crate::config::Config) -> Elsewhere {
        Elsewhere {
            slowlog_us: config.slowlog_log_slower_than_us,
            slowlog_len: config.slowlog_max_len,
            latency_ms: config.latency_monitor_threshold_ms,
            read_only: config.replication.read_only,
            priority: config.replication.priority,
            repl_timeout: config.replication.timeout,
            ping_period: config.replication.ping_period,
            announce: (
                config.replication.announce_ip.clone(),
                config.replication.announce_port,
            ),
            backlog: config.replication.backlog_bytes,
            masteruser: config.replication.masteruser.clone(),
        }
    }
}

/// The settings as a TOML file writes them, under their keys (the flags' names): every one
/// CONFIG SET changes but the passwords (see the module's note) and `replicaof`
/// ([`rewrite_replicaof`]).
fn rendered(
    live: &Live,
    events: EventFlags,
    snapshot_interval: Option<Duration>,
    aof: AofLive,
    elsewhere: Elsewhere,
) -> [(&'static str, Value); 28] {
    let int = |n: u64| Value::from(i64::try_from(n).unwrap_or(i64::MAX));
    let duration = |d: Duration| Value::from(format_duration(d));
    let yes_no = |yes: bool| Value::from(if yes { "yes" } else { "no" });
    [
        ("maxmemory", Value::from(format_size(live.maxmemory()))),
        (
            "maxmemory-policy",
            Value::from(live.maxmemory_policy().name()),
        ),
        ("timeout", duration(live.idle_timeout().unwrap_or_default())),
        ("maxclients", int(live.maxclients() as u64)),
        (
            "max-auth-failures",
            int(u64::from(live.max_auth_failures())),
        ),
        (
            "busy-reply-threshold",
            int(live.busy_reply_threshold().as_millis() as u64),
        ),
        ("session-idle", duration(live.session_idle())),
        ("session-absolute", duration(live.session_absolute())),
        (
            "session-max-per-user",
            int(live.session_max_per_user() as u64),
        ),
        (
            "session-max-bytes",
            Value::from(format_size(live.session_max_bytes())),
        ),
        ("notify-keyspace-events", Value::from(events.to_string())),
        (
            "snapshot-interval",
            duration(snapshot_interval.unwrap_or_default()),
        ),
        (
            "client-output-buffer-limit",
            Value::from(live.output_limits().config_value()),
        ),
        ("appendonly", Value::from(if aof.0 { "yes" } else { "no" })),
        ("appendfsync", Value::from(aof.1.name())),
        ("auto-aof-rewrite-percentage", int(aof.2)),
        ("auto-aof-rewrite-min-size", Value::from(format_size(aof.3))),
        ("slowlog-log-slower-than", Value::from(elsewhere.slowlog_us)),
        ("slowlog-max-len", int(elsewhere.slowlog_len)),
        ("latency-monitor-threshold", int(elsewhere.latency_ms)),
        ("replica-read-only", yes_no(elsewhere.read_only)),
        ("replica-priority", Value::from(elsewhere.priority)),
        ("repl-timeout", duration(elsewhere.repl_timeout)),
        ("repl-ping-replica-period", duration(elsewhere.ping_period)),
        (
            "replica-announce-ip",
            Value::from(elsewhere.announce.0.clone().unwrap_or_default()),
        ),
        (
            "replica-announce-port",
            int(u64::from(elsewhere.announce.1)),
        ),
        (
            "repl-backlog-size",
            Value::from(format_size(elsewhere.backlog)),
        ),
        (
            "masteruser",
            Value::from(elsewhere.masteruser.unwrap_or_default()),
        ),
    ]
}

/// The append-only log's settings CONFIG SET changes: `appendonly`, `appendfsync` and the
/// rewrite thresholds.
type AofLive = (bool, Fsync, u64, u64);

/// The log's settings as `config` starts them.
fn aof_at_start(config: &crate::config::Config) -> AofLive {
    let aof = config
        .persistence
        .as_ref()
        .map(|p| p.aof.clone())
        .unwrap_or_default();
    (
        aof.enabled && config.persistence.is_some(),
        aof.fsync,
        aof.rewrite_percentage,
        aof.rewrite_min_size,
    )
}

/// Other names a file may give a key under (serde aliases of [`crate::config::RawConfig`]).
fn aliases(key: &str) -> &'static [&'static str] {
    match key {
        "busy-reply-threshold" => &["lua-time-limit"],
        "replica-read-only" => &["slave-read-only"],
        "replica-priority" => &["slave-priority"],
        "repl-ping-replica-period" => &["repl-ping-slave-period"],
        "replica-announce-ip" => &["slave-announce-ip"],
        "replica-announce-port" => &["slave-announce-port"],
        _ => &[],
    }
}

/// What the file's `key = old` means, written as [`rendered`] writes it: read by the same
/// code that reads the file at start, so `"5s"` and `5000` say the same threshold.
fn file_says(file_key: &str, key: &str, old: &Value) -> Option<Value> {
    let old = old.clone().decorated("", "");
    let mut raw: crate::config::RawConfig = toml::from_str(&format!("{file_key} = {old}")).ok()?;
    raw.no_persistence = None;
    let config = raw.validate().ok()?;
    let interval = config.persistence.as_ref().and_then(|p| p.interval);
    let aof = aof_at_start(&config);
    rendered(
        &Live::new(&config),
        config.notify_keyspace_events,
        interval,
        aof,
        Elsewhere::at_start(&config),
    )
    .into_iter()
    .find_map(|(k, value)| (k == key).then_some(value))
}

/// Whether two values say the same (their decoration aside).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.value() == b.value(),
        (Value::Integer(a), Value::Integer(b)) => a.value() == b.value(),
        _ => false,
    }
}

/// Rewrites the config file; the error reply if there is none or it cannot be rewritten.
pub fn rewrite(shared: &Shared) -> Result<(), String> {
    let path = shared
        .config
        .config_file
        .as_deref()
        .ok_or_else(|| NO_CONFIG_FILE.to_owned())?;
    let failed = |error: &dyn std::fmt::Display| format!("ERR Rewriting config file: {error}");
    let text = std::fs::read_to_string(path).map_err(|e| failed(&e))?;
    let mut doc: DocumentMut = text.parse().map_err(|e| failed(&e))?;
    let aof_running = {
        let aof = shared.persistence.aof_settings();
        (
            aof.enabled,
            aof.fsync,
            aof.rewrite_percentage,
            aof.rewrite_min_size,
        )
    };
    let running = rendered(
        &shared.live,
        shared.dbs.notifier().flags().get(),
        shared.persistence.interval(),
        aof_running,
        Elsewhere::running(shared),
    );
    let at_start = rendered(
        &Live::new(&shared.config),
        shared.config.notify_keyspace_events,
        shared.config.persistence.as_ref().and_then(|p| p.interval),
        aof_at_start(&shared.config),
        Elsewhere::at_start(&shared.config),
    );
    for ((key, now), (_, started)) in running.into_iter().zip(at_start) {
        let found = std::iter::once(key)
            .chain(aliases(key).iter().copied())
            .find(|k| doc.contains_key(k));
        match found {
            Some(found) => {
                if let Some(Item::Value(old)) = doc.get_mut(found) {
                    let unchanged = file_says(found, key, old).is_some_and(|v| same(&v, &now));
                    if !unchanged {
                        let decor = old.decor().clone();
                        *old = now;
                        *old.decor_mut() = decor;
                    }
                }
            }
            None if !same(&now, &started) => {
                doc.insert(key, Item::Value(now));
            }
            None => {}
        }
    }
    rewrite_replicaof(shared, &mut doc);
    rewrite_passwords(shared, &mut doc);
    replace(path, doc.to_string().as_bytes()).map_err(|e| failed(&e))
}

/// The passwords CONFIG SET changed, where the file holds them (see the module's note).
fn rewrite_passwords(shared: &Shared, doc: &mut DocumentMut) {
    let masterauth = shared.repl.masterauth();
    let masterauth_at_start = shared
        .config
        .replication
        .masterauth
        .as_ref()
        .map(|secret| secret.expose().to_owned());
    let changed = [
        (
            "requirepass",
            shared
                .auth
                .requirepass_set_at_run_time()
                .map(|secret| secret.map(|s| s.expose().to_owned())),
        ),
        (
            "masterauth",
            (masterauth != masterauth_at_start).then_some(masterauth),
        ),
    ];
    for (key, now) in changed {
        let Some(now) = now else { continue };
        match (now, doc.get_mut(key)) {
            (Some(now), Some(Item::Value(old))) if old.as_str() != Some(now.as_str()) => {
                let decor = old.decor().clone();
                *old = Value::from(now);
                *old.decor_mut() = decor;
            }
            (None, Some(_)) => {
                doc.remove(key);
            }
            _ => {}
        }
    }
}

/// Writes the primary this node follows now as `replicaof` (or its alias `slaveof`, where the
/// file has it), and removes the key from a node that follows none: a node Sentinel promoted
/// or pointed elsewhere starts again in that role.
pub fn rewrite_replicaof(shared: &Shared, doc: &mut DocumentMut) {
    let found = ["replicaof", "slaveof"]
        .into_iter()
        .find(|k| doc.contains_key(k));
    match (crate::role::replicaof_setting(&shared.repl), found) {
        (Some(now), Some(key)) => {
            if let Some(Item::Value(old)) = doc.get_mut(key) {
                if old.as_str() != Some(now.as_str()) {
                    let decor = old.decor().clone();
                    *old = Value::from(now);
                    *old.decor_mut() = decor;
                }
            }
        }
        (Some(now), None) => {
            doc.insert("replicaof", Item::Value(Value::from(now)));
        }
        (None, Some(key)) => {
            doc.remove(key);
        }
        (None, None) => {}
    }
}

/// Replaces `path` with `contents` atomically, keeping its mode.
fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.rewrite-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_rewrite_keeps_comments_and_changes_only_what_changed() {
        let dir = std::env::temp_dir().join(format!("sessiond-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessiond.toml");
        let text = format!(
            "# the server\nmaxclients = 100 # at most\n\n# scripts\nlua-time-limit = \"5s\"\n\n\
             [[user]]\nname = \"ops\"\npassword-sha256 = \"{}\"\n",
            crate::auth::password_sha256("ops password")
        );
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let config = Config {
            maxclients: 100,
            config_file: Some(path.clone()),
            ..Config::default()
        };
        let shared = Shared::unbound(config);
        // Unchanged: the file is written as it was.
        rewrite(&shared).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        shared.live.set_maxclients(200);
        shared
            .live
            .set_busy_reply_threshold(std::time::Duration::from_millis(250));
        shared.live.set_maxmemory(64 << 20);
        rewrite(&shared).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with("# the server\nmaxclients = 200 # at most\n"),
            "{after}"
        );
        assert!(
            after.contains("# scripts\nlua-time-limit = 250\n"),
            "{after}"
        );
        assert!(after.contains("maxmemory = \"64mb\""), "{after}");
        assert!(!after.contains("busy-reply-threshold"), "{after}");
        // The added key is a top-level one, before the users' tables.
        assert!(after.find("maxmemory").unwrap() < after.find("[[user]]").unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let raw: crate::config::RawConfig = toml::from_str(&after).unwrap();
        let reread = raw.validate().unwrap();
        assert_eq!(
            (reread.maxclients, reread.maxmemory),
            (200, 64 << 20),
            "the rewritten file reads back"
        );
        assert_eq!(reread.busy_reply_threshold.as_millis(), 250);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_setting_config_set_changes_is_written_back() {
        let shared = Shared::unbound(Config::default());
        let written: Vec<&str> = rendered(
            &shared.live,
            shared.dbs.notifier().flags().get(),
            shared.persistence.interval(),
            aof_at_start(&shared.config),
            Elsewhere::running(&shared),
        )
        .iter()
        .map(|(key, _)| *key)
        .collect();
        // The passwords are never written (see the module's note); `save` sets
        // `snapshot-interval`, written under that name.
        let not_written = ["requirepass", "masterauth", "save"];
        for name in super::super::config::settable_names() {
            let as_key = written.contains(&name);
            let as_alias = written.iter().any(|key| aliases(key).contains(&name));
            assert!(
                as_key || as_alias || not_written.contains(&name),
                "CONFIG SET changes {name}, CONFIG REWRITE loses it"
            );
        }
    }

    #[test]
    fn a_password_changed_at_run_time_replaces_the_file_s_but_is_never_added() {
        use crate::auth::Secret;
        let dir = std::env::temp_dir().join(format!("sessiond-rewrite-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessiond.toml");
        let text = "requirepass = \"old-password\" # rotated\nmasterauth = \"old-link\"\n";
        std::fs::write(&path, text).unwrap();
        let config = Config {
            requirepass: Some(Secret::new("old-password".into())),
            config_file: Some(path.clone()),
            ..Config::default()
        };
        let shared = Shared::unbound(config);
        // Nothing changed at run time: the file stays as it is.
        rewrite(&shared).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        shared
            .auth
            .set_requirepass(Some(&Secret::new("new-password".into())));
        shared
            .repl
            .set_masterauth(Some(Secret::new("new-link".into())));
        rewrite(&shared).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            "requirepass = \"new-password\" # rotated\nmasterauth = \"new-link\"\n"
        );
        // Removed at run time: the key goes, or the old password would come back.
        shared.auth.set_requirepass(None);
        rewrite(&shared).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(!after.contains("requirepass"), "{after}");
        // A file without the key does not get one.
        std::fs::write(&path, "maxclients = 10\n").unwrap();
        shared
            .auth
            .set_requirepass(Some(&Secret::new("another".into())));
        rewrite(&shared).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            !after.contains("another") && !after.contains("new-link"),
            "{after}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_file_redis_s_error() {
        let shared = Shared::unbound(Config::default());
        assert_eq!(rewrite(&shared), Err(NO_CONFIG_FILE.to_owned()));
    }
}
