//! Users, authentication and permissions.
//!
//! The `default` user is the `--requirepass` one: without a password it needs no AUTH, like
//! Redis's `nopass` default user, unless named users are configured, which disables it (a
//! server that separates applications must not let an anonymous client past them). Named users
//! come from the config file, each with a SHA-256 password digest, the key patterns it may touch,
//! the command categories it may run, and the prefix of the session IDs it creates.
//!
//! Passwords are kept only as digests and a candidate is compared by digest in constant time,
//! so neither the comparison's duration nor the password's length leaks through timing; an
//! unknown user costs the same hash as a known one. Nothing here logs or prints a password.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use sessiond_protocol::cmd::{AclCategories, CommandSpec};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::glob;
use crate::setting::Invalid;

/// A secret string from the configuration, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A command category a user may be granted. Connection commands (PING, AUTH, HELLO, QUIT,
/// RESET, SELECT, ECHO, COMMAND, TIME, CLIENT but CLIENT LIST) need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Reading keys: GET, MGET, TTL, EXISTS, HGET, SCAN (filtered to the user's keys), DBSIZE...
    Read = 1,
    /// Writing keys: SET, DEL, EXPIRE, HSET...
    Write = 2,
    /// The native session commands, SESSION.*.
    Session = 4,
    /// The server and every key at once: FLUSHALL, KEYS, INFO, CONFIG, SAVE, SHUTDOWN, CLIENT LIST...
    Admin = 8,
}

impl Category {
    /// Every category, in the order of the names.
    pub const ALL: [Category; 4] = [
        Category::Read,
        Category::Write,
        Category::Session,
        Category::Admin,
    ];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Session => "session",
            Category::Admin => "admin",
        }
    }

    /// The category `spec` needs, from its Redis ACL categories: `@admin` and `@dangerous`
    /// commands are admin ones, then `@session`, `@write`, `@read`; `None`: a connection or
    /// transaction command (WATCH's keys are still checked; a queued command is checked itself).
    pub fn of(spec: &CommandSpec) -> Option<Category> {
        let has = |c: AclCategories| spec.categories.contains(c);
        if spec
            .categories
            .intersects(AclCategories::ADMIN.with(AclCategories::DANGEROUS))
        {
            Some(Category::Admin)
        } else if has(AclCategories::SESSION) {
            Some(Category::Session)
        } else if has(AclCategories::WRITE) {
            Some(Category::Write)
        } else if has(AclCategories::READ) {
            Some(Category::Read)
        } else {
            None
        }
    }
}

/// A set of categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories(u8);

impl Categories {
    /// Every category.
    pub const ALL: Categories = Categories(0b1111);

    /// Adds `category`.
    pub fn with(self, category: Category) -> Categories {
        Categories(self.0 | category as u8)
    }

    /// Whether `category` is in the set.
    pub fn contains(self, category: Category) -> bool {
        self.0 & category as u8 != 0
    }
}

/// The keys a user may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPatterns {
    /// Every key.
    All,
    /// The keys matching one of these glob patterns (compiled once, at start).
    Only(Vec<glob::Pattern>),
}

impl KeyPatterns {
    /// Whether `key` is allowed.
    pub fn allow(&self, key: &[u8]) -> bool {
        match self {
            KeyPatterns::All => true,
            KeyPatterns::Only(patterns) => patterns.iter().any(|p| p.matches(key)),
        }
    }
}

/// The pub/sub channels a user may use (Redis ACL's `&pattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPatterns {
    /// Every channel (`allchannels`).
    All,
    /// The channels matching one of these glob patterns, as written and compiled.
    Only(Vec<(Bytes, glob::Pattern)>),
}

impl ChannelPatterns {
    /// Whether SUBSCRIBE or PUBLISH may use `channel`: one of the patterns matches it.
    pub fn allow_channel(&self, channel: &[u8]) -> bool {
        match self {
            ChannelPatterns::All => true,
            ChannelPatterns::Only(patterns) => patterns.iter().any(|(_, p)| p.matches(channel)),
        }
    }

    /// Whether PSUBSCRIBE may use `pattern`: it is one of the patterns, literally (as Redis
    /// checks, a pattern being no channel).
    pub fn allow_pattern(&self, pattern: &[u8]) -> bool {
        match self {
            ChannelPatterns::All => true,
            ChannelPatterns::Only(patterns) => patterns.iter().any(|(raw, _)| raw == pattern),
        }
    }
}

/// The channels of session events: their messages carry session IDs, so only users allowed
/// SESSION commands may subscribe to them by name.
pub const SESSION_CHANNELS: &[u8] = b"__session__:";

/// One user: who it is and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Its name (AUTH's first argument).
    pub name: String,
    /// SHA-256 of its password; `None`: any password (the `default` user without requirepass).
    pub password_sha256: Option<[u8; 32]>,
    /// The keys it may touch.
    pub keys: KeyPatterns,
    /// The command categories it may run.
    pub categories: Categories,
    /// The pub/sub channels it may use.
    pub channels: ChannelPatterns,
    /// The prefix of the session IDs it creates; SESSION.LIST, COUNT and DESTROYALL see only
    /// the sessions under it, so two applications' users of the same name never meet.
    pub session_prefix: Bytes,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("categories", &self.categories)
            .field("channels", &self.channels)
            .field("session_prefix", &self.session_prefix)
            .finish_non_exhaustive()
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The user may not run the command.
    Command,
    /// The user may not touch one of the command's keys.
    Key,
    /// The user may not use one of the command's channels.
    Channel,
}

impl User {
    /// The `default` user: every key and command; `password` if one is required.
    pub fn default_user(password: Option<&Secret>) -> User {
        User {
            name: "default".to_owned(),
            password_sha256: password.map(|p| sha256(p.expose().as_bytes())),
            keys: KeyPatterns::All,
            categories: Categories::ALL,
            channels: ChannelPatterns::All,
            session_prefix: Bytes::new(),
        }
    }

    /// Whether the user may do everything but perhaps pub/sub (the permission check is skipped;
    /// the pub/sub commands check channels themselves, see [`User::allow_channels`]).
    pub fn unrestricted(&self) -> bool {
        self.keys == KeyPatterns::All && self.categories == Categories::ALL
    }

    /// Whether it is the `default` user (`--requirepass`'s), not a named one.
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }

    /// Whether the user may receive session events (SESSION commands are allowed).
    pub fn session_events(&self) -> bool {
        self.categories.contains(Category::Session)
    }

    /// Whether the user may use every one of `channels` (`pattern`: PSUBSCRIBE's patterns).
    pub fn allow_channels<'a>(
        &self,
        mut channels: impl Iterator<Item = &'a Bytes>,
        pattern: bool,
    ) -> bool {
        channels.all(|c| self.allow_channel(c, pattern))
    }

    /// Whether the user may subscribe to or publish on `channel` (`pattern`: PSUBSCRIBE's).
    pub fn allow_channel(&self, channel: &[u8], pattern: bool) -> bool {
        if pattern {
            return self.channels.allow_pattern(channel);
        }
        self.channels.allow_channel(channel)
            && (!channel.starts_with(SESSION_CHANNELS) || self.session_events())
    }

    /// Whether the user may run the command `args` (name first, arity already checked), the
    /// table row of which is `spec`: its category, then every key argument.
    pub fn permit(&self, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        // CLIENT's container is @connection, but these subcommands are @admin in Redis.
        let client_admin = spec.name == "client"
            && args.get(1).is_some_and(|a| {
                ["list", "kill", "pause", "unpause", "no-evict"]
                    .iter()
                    .any(|sub| a.eq_ignore_ascii_case(sub.as_bytes()))
            });
        let category = if client_admin {
            Some(Category::Admin)
        } else if spec.name == "memory" {
            // MEMORY USAGE reads a key (its patterns are checked by the command); the other
            // subcommands tell about the whole keyspace, as INFO does.
            let usage = args
                .get(1)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"usage"));
            Some(if usage {
                Category::Read
            } else {
                Category::Admin
            })
        } else {
            Category::of(spec)
        };
        if category.is_some_and(|c| !self.categories.contains(c)) {
            return Err(Denied::Command);
        }
        if spec.key_args(args).any(|key| !self.keys.allow(key)) {
            return Err(Denied::Key);
        }
        let channels = match spec.name {
            "subscribe" | "ssubscribe" => args.get(1..),
            "publish" | "spublish" => args.get(1..2),
            "psubscribe" => args.get(1..),
            _ => None,
        };
        let pattern = spec.name == "psubscribe";
        if channels.is_some_and(|c| c.iter().any(|c| !self.allow_channel(c, pattern))) {
            return Err(Denied::Channel);
        }
        Ok(())
    }
}

/// Who may connect, and as whom.
pub struct Auth {
    /// The `default` user; `None` when named users disabled it. Behind a lock because
    /// `CONFIG SET requirepass` replaces it: read when a connection starts and at AUTH, never
    /// by other commands (a connection holds its own `Arc<User>`, so one that authenticated
    /// stays authenticated, as in Redis).
    default: RwLock<Option<Arc<User>>>,
    /// Named users by name.
    users: HashMap<String, Arc<User>>,
    /// The password `CONFIG SET requirepass` last gave the `default` user, if it ever did
    /// (`Some(None)`: it removed it): what CONFIG REWRITE puts in place of the one a config
    /// file holds, which would otherwise come back at the next start.
    set_at_run_time: std::sync::Mutex<Option<Option<Secret>>>,
}

impl Clone for Auth {
    fn clone(&self) -> Auth {
        Auth {
            default: RwLock::new(self.default()),
            users: self.users.clone(),
            set_at_run_time: std::sync::Mutex::new(self.requirepass_set_at_run_time()),
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("required", &self.required())
            .field("users", &self.users.len())
            .finish()
    }
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::new(None, &[])
    }
}

impl Auth {
    /// Authentication with `requirepass` (if any) for the `default` user, and the named users.
    /// With named users and no requirepass, the `default` user is disabled.
    pub fn new(requirepass: Option<&Secret>, users: &[User]) -> Auth {
        let users: HashMap<_, _> = users
            .iter()
            .map(|u| (u.name.clone(), Arc::new(u.clone())))
            .collect();
        Auth {
            default: RwLock::new(default_user(requirepass, &users)),
            users,
            set_at_run_time: std::sync::Mutex::new(None),
        }
    }

    /// Replaces the `default` user's password (`None`: none, or with named users, the `default`
    /// user disabled) for the connections and AUTHs to come.
    pub fn set_requirepass(&self, requirepass: Option<&Secret>) {
        let user = default_user(requirepass, &self.users);
        *self.default.write().unwrap_or_else(|p| p.into_inner()) = user;
        *self
            .set_at_run_time
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(requirepass.cloned());
    }

    /// The password the last [`Auth::set_requirepass`] gave, if one ran (`Some(None)`: none).
    pub fn requirepass_set_at_run_time(&self) -> Option<Option<Secret>> {
        self.set_at_run_time
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn default(&self) -> Option<Arc<User>> {
        self.default
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether clients must authenticate before other commands.
    pub fn required(&self) -> bool {
        self.initial_user().is_none()
    }

    /// The user a new connection starts as: the `default` user when it needs no password.
    pub fn initial_user(&self) -> Option<Arc<User>> {
        self.default().filter(|u| u.password_sha256.is_none())
    }

    /// Whether the `default` user has a password (AUTH with one argument is meaningful).
    pub fn default_has_password(&self) -> bool {
        self.default().is_some_and(|u| u.password_sha256.is_some())
    }

    /// The user `name` (`None`: `default`) if `password` is theirs.
    pub fn check(&self, name: Option<&[u8]>, password: &[u8]) -> Option<Arc<User>> {
        let user = match name {
            None | Some(b"default") => self.default(),
            Some(name) => std::str::from_utf8(name)
                .ok()
                .and_then(|name| self.users.get(name))
                .cloned(),
        };
        // Hash even for an unknown user, so that it costs the same as a wrong password.
        let digest = sha256(password);
        let user = user?;
        match &user.password_sha256 {
            // Without a password the default user accepts any, like Redis's `nopass`.
            None => Some(user),
            Some(expected) => bool::from(digest.ct_eq(expected)).then_some(user),
        }
    }
}

/// The `default` user for `requirepass`: disabled when there are named users and no password.
fn default_user(
    requirepass: Option<&Secret>,
    users: &HashMap<String, Arc<User>>,
) -> Option<Arc<User>> {
    (requirepass.is_some() || users.is_empty()).then(|| Arc::new(User::default_user(requirepass)))
}

/// At most one "authentication failed" line per this long: a password guesser must not be able
/// to fill the disk with log lines.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Samples the log of authentication failures: the first failure in each
/// [`FAILURE_LOG_INTERVAL`] is logged with the count of those left out since the last line; the
/// others are only counted (every one is in `acl_access_denied_auth`).
#[derive(Debug, Default)]
pub struct FailureLog {
    state: Mutex<FailureLogState>,
}

#[derive(Debug, Default)]
struct FailureLogState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    /// Records a failure at `now`: `Some(n)` when it is to be logged, `n` being the failures not
    /// logged since the last line; `None` when it is only counted.
    pub fn sample(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = state
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= FAILURE_LOG_INTERVAL);
        if due {
            state.last_logged = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

impl Secret {
    /// The `default` user's password from `--requirepass` (`SESSIOND_PASSWORD`) or the one line
    /// of `--requirepass-file` (its line ending dropped): never both, never empty; `None`
    /// without either.
    pub fn from_settings(
        password: Option<String>,
        file: Option<&Path>,
    ) -> Result<Option<Secret>, PasswordError> {
        let password = match (password, file) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "requirepass-file",
                    "",
                    "give the password once: --requirepass (SESSIOND_PASSWORD) or \
                     --requirepass-file, not both",
                )
                .into())
            }
            (Some(password), None) => password,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| PasswordError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
            (None, None) => return Ok(None),
        };
        if password.is_empty() {
            return Err(Invalid::new(
                "requirepass",
                "",
                "an empty password is no password; leave it unset instead",
            )
            .into());
        }
        Ok(Some(Secret::new(password)))
    }
}

/// Why the `default` user's password cannot be used; never tells the password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Given twice, or empty.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// `--requirepass-file` cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One `[[user]]` table of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawUser {
    /// The name clients give to AUTH.
    pub name: String,
    /// SHA-256 of the password, 64 hex digits (`sessiond hash-password` prints it).
    pub password_sha256: String,
    /// Glob patterns of the keys the user may touch (`*`: every key).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Command categories: `read`, `write`, `session`, `admin`, or `all`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Prefix of the session IDs the user creates, e.g. `sess:app1:`.
    #[serde(default)]
    pub session_prefix: String,
    /// Glob patterns of the pub/sub channels the user may use (`*`: every channel; none: no
    /// pub/sub), as Redis ACL's `&pattern`.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// The longest session-ID prefix.
const MAX_SESSION_PREFIX: usize = 64;

/// Validates the config file's `[[user]]` tables: names, digests, key patterns no longer than
/// `max_pattern_len`, categories, and session prefixes each application can use on its own.
pub fn users(raw: Vec<RawUser>, max_pattern_len: usize) -> Result<Vec<User>, Invalid> {
    let mut users: Vec<User> = Vec::with_capacity(raw.len());
    for raw in raw {
        let invalid =
            |setting: &'static str, reason: String| Invalid::new(setting, &raw.name, reason);
        let name_ok = !raw.name.is_empty()
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b));
        if !name_ok {
            return Err(invalid(
                "user.name",
                "a user name is letters, digits and _ - . @".to_owned(),
            ));
        }
        if raw.name == "default" {
            return Err(invalid(
                "user.name",
                "the default user is the --requirepass one; give this user another name".to_owned(),
            ));
        }
        if users.iter().any(|u| u.name == raw.name) {
            return Err(invalid("user.name", "the user is defined twice".to_owned()));
        }
        let digest = parse_sha256(&raw.password_sha256).ok_or_else(|| {
            invalid(
                "user.password-sha256",
                "expected the password's SHA-256 digest as 64 hex digits \
                 (`sessiond hash-password` prints it)"
                    .to_owned(),
            )
        })?;
        if raw.keys.iter().any(|k| k.len() > max_pattern_len) {
            return Err(invalid(
                "user.keys",
                format!("a key pattern is longer than max-pattern-len ({max_pattern_len} bytes)"),
            ));
        }
        let keys = if raw.keys.iter().any(|k| k == "*") {
            KeyPatterns::All
        } else {
            KeyPatterns::Only(
                raw.keys
                    .iter()
                    .map(|k| crate::glob::Pattern::new(k.as_bytes()))
                    .collect(),
            )
        };
        let mut categories = Categories::default();
        for name in &raw.categories {
            if name == "all" {
                categories = Categories::ALL;
                continue;
            }
            let category = Category::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    invalid(
                        "user.categories",
                        format!("unknown category {name:?}; expected read, write, session, admin or all"),
                    )
                })?;
            categories = categories.with(category);
        }
        let prefix = raw.session_prefix.as_bytes();
        if prefix.len() > MAX_SESSION_PREFIX
            || prefix
                .iter()
                .any(|b| !b.is_ascii_graphic() || b"\",;\\".contains(b))
        {
            return Err(invalid(
                "user.session-prefix",
                format!(
                    "a session-ID prefix is at most {MAX_SESSION_PREFIX} printable characters, \
                     without spaces, quotes, commas, semicolons or backslashes (it ends up in cookies)"
                ),
            ));
        }
        if categories.contains(Category::Session)
            && keys != KeyPatterns::All
            && raw.session_prefix.is_empty()
        {
            return Err(invalid(
                "user.session-prefix",
                format!(
                    "a user limited to some keys needs a session-prefix of its own for its \
                     sessions (e.g. \"sess:{}:\"); without one it would share the default \
                     user's session lists",
                    raw.name
                ),
            ));
        }
        let shares_prefix = users.iter().any(|u| {
            u.categories.contains(Category::Session) && u.session_prefix == raw.session_prefix
        });
        if categories.contains(Category::Session) && shares_prefix {
            return Err(invalid(
                "user.session-prefix",
                "another user with sessions has the same session-prefix: each application \
                 needs its own, or each could list and end the other's sessions"
                    .to_owned(),
            ));
        }
        let sample_id = [prefix, &[b'A'; crate::store::session::ID_LEN]].concat();
        if categories.contains(Category::Session) && !keys.allow(&sample_id) {
            return Err(invalid(
                "user.session-prefix",
                format!(
                    "the user may use sessions, but its session IDs ({:?} followed by {} \
                     characters) would not match its key patterns; set session-prefix to a prefix \
                     they allow, e.g. \"sess:{}:\"",
                    raw.session_prefix,
                    crate::store::session::ID_LEN,
                    raw.name
                ),
            ));
        }
        if raw.channels.iter().any(|c| c.len() > max_pattern_len) {
            return Err(invalid(
                "user.channels",
                format!(
                    "a channel pattern is longer than max-pattern-len ({max_pattern_len} bytes)"
                ),
            ));
        }
        let channels = if raw.channels.iter().any(|c| c == "*") {
            ChannelPatterns::All
        } else {
            ChannelPatterns::Only(
                raw.channels
                    .iter()
                    .map(|c| {
                        (
                            Bytes::copy_from_slice(c.as_bytes()),
                            crate::glob::Pattern::new(c.as_bytes()),
                        )
                    })
                    .collect(),
            )
        };
        users.push(User {
            name: raw.name,
            password_sha256: Some(digest),
            keys,
            categories,
            channels,
            session_prefix: Bytes::from(raw.session_prefix),
        });
    }
    Ok(users)
}

/// 64 hex digits as 32 bytes.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

/// The lower-case hex SHA-256 digest of a password, as `password-sha256` wants it.
pub fn password_sha256(password: &str) -> String {
    sha256(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_protocol::cmd::{lookup, COMMANDS};

    fn app1() -> User {
        User {
            name: "app1".into(),
            password_sha256: Some(sha256(b"pw1")),
            keys: KeyPatterns::Only(vec![glob::Pattern::new(b"sess:app1:*")]),
            categories: Categories::default()
                .with(Category::Read)
                .with(Category::Write)
                .with(Category::Session),
            channels: ChannelPatterns::Only(vec![(
                Bytes::from_static(b"app1:*"),
                glob::Pattern::new(b"app1:*"),
            )]),
            session_prefix: Bytes::from_static(b"sess:app1:"),
        }
    }

    #[test]
    fn channel_permissions_follow_redis_acl() {
        let user = app1();
        let permit = |args: &[&str]| {
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
            let spec = COMMANDS.iter().find(|s| s.name == args[0]).unwrap();
            user.permit(spec, &args)
        };
        assert_eq!(permit(&["subscribe", "app1:news"]), Ok(()));
        assert_eq!(
            permit(&["subscribe", "app1:news", "other"]),
            Err(Denied::Channel)
        );
        assert_eq!(permit(&["publish", "app1:x", "msg"]), Ok(()));
        assert_eq!(
            permit(&["publish", "other", "app1:x"]),
            Err(Denied::Channel)
        );
        // A pattern must be one of the user's, literally.
        assert_eq!(permit(&["psubscribe", "app1:*"]), Ok(()));
        assert_eq!(permit(&["psubscribe", "app1:n*"]), Err(Denied::Channel));
        assert_eq!(permit(&["ssubscribe", "app1:orders"]), Ok(()));
        assert_eq!(permit(&["unsubscribe", "anything"]), Ok(()));
        let mut no_sessions = app1();
        no_sessions.categories = Categories::default().with(Category::Read);
        no_sessions.channels = ChannelPatterns::All;
        assert!(no_sessions.allow_channel(b"news", false));
        assert!(!no_sessions.allow_channel(b"__session__:created", false));
        let mut listener = app1();
        listener.channels = ChannelPatterns::Only(vec![(
            Bytes::from_static(b"__session__:*"),
            glob::Pattern::new(b"__session__:*"),
        )]);
        assert!(listener.allow_channel(b"__session__:created", false));
    }

    #[test]
    fn failures_are_logged_at_most_once_a_second_with_the_count_left_out() {
        let log = FailureLog::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(log.sample(at(0)), Some(0));
        for ms in 1..1000 {
            assert_eq!(log.sample(at(ms)), None);
        }
        assert_eq!(log.sample(at(1000)), Some(999));
        assert_eq!(log.sample(at(1500)), None);
        assert_eq!(log.sample(at(5000)), Some(1));
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn permit(user: &User, words: &[&str]) -> Result<(), Denied> {
        let spec = lookup(words[0].as_bytes()).expect("a known command");
        user.permit(spec, &args(words))
    }

    #[test]
    fn checks_the_password_and_the_user() {
        let auth = Auth::new(Some(&Secret::new("s3cret".into())), &[app1()]);
        assert!(auth.required());
        assert!(auth.default_has_password());
        assert!(auth.check(None, b"s3cret").is_some());
        assert!(auth.check(Some(b"default"), b"s3cret").is_some());
        assert!(auth.check(None, b"s3cre").is_none());
        assert!(auth.check(None, b"").is_none());
        assert!(auth.check(Some(b"other"), b"s3cret").is_none());
        assert_eq!(
            auth.check(Some(b"app1"), b"pw1").map(|u| u.name.clone()),
            Some("app1".into())
        );
        assert!(auth.check(Some(b"app1"), b"s3cret").is_none());
    }

    #[test]
    fn no_password_means_nopass_default_user() {
        let auth = Auth::new(None, &[]);
        assert!(!auth.required());
        assert!(auth.initial_user().is_some_and(|u| u.unrestricted()));
        assert!(auth.check(Some(b"default"), b"anything").is_some());
        assert!(auth.check(Some(b"other"), b"anything").is_none());
    }

    #[test]
    fn named_users_without_requirepass_disable_the_default_user() {
        let auth = Auth::new(None, &[app1()]);
        assert!(auth.required());
        assert!(auth.initial_user().is_none());
        assert!(auth.check(Some(b"default"), b"anything").is_none());
        assert!(auth.check(None, b"anything").is_none());
        assert!(auth.check(Some(b"app1"), b"pw1").is_some());
    }

    #[test]
    fn categories_and_keys_are_enforced() {
        let user = app1();
        assert!(!user.unrestricted());
        assert_eq!(permit(&user, &["get", "sess:app1:x"]), Ok(()));
        assert_eq!(permit(&user, &["get", "sess:app2:x"]), Err(Denied::Key));
        assert_eq!(permit(&user, &["flushall"]), Err(Denied::Command));
        assert_eq!(permit(&user, &["keys", "*"]), Err(Denied::Command));
        assert_eq!(permit(&user, &["info"]), Err(Denied::Command));
        assert_eq!(permit(&user, &["client", "list"]), Err(Denied::Command));
        assert_eq!(permit(&user, &["client", "setname", "x"]), Ok(()));
        assert_eq!(permit(&user, &["ping"]), Ok(()));
        // MSET: keys at 1, 3, 5...; values are not keys.
        assert_eq!(
            permit(&user, &["mset", "sess:app1:a", "sess:app2:b"]),
            Ok(())
        );
        assert_eq!(
            permit(&user, &["mset", "sess:app1:a", "1", "sess:app2:b", "2"]),
            Err(Denied::Key)
        );
        // DEL: every argument is a key.
        assert_eq!(
            permit(&user, &["del", "sess:app1:a", "sess:app2:b"]),
            Err(Denied::Key)
        );
        assert_eq!(permit(&user, &["session.get", "sess:app1:abc"]), Ok(()));
        assert_eq!(permit(&user, &["session.get", "abc"]), Err(Denied::Key));
        assert_eq!(permit(&user, &["session.create", "USER", "ada"]), Ok(()));
        let reader = User {
            categories: Categories::default().with(Category::Read),
            ..app1()
        };
        assert_eq!(
            permit(&reader, &["set", "sess:app1:a", "1"]),
            Err(Denied::Command)
        );
        assert_eq!(permit(&reader, &["session.create"]), Err(Denied::Command));
        // MEMORY USAGE reads; the keyspace-wide MEMORY subcommands and CLIENT KILL/PAUSE are
        // admin, as CLIENT LIST is.
        assert_eq!(permit(&reader, &["memory", "usage", "sess:app1:a"]), Ok(()));
        for words in [
            &["memory", "stats"][..],
            &["client", "kill", "id", "1"],
            &["client", "pause", "10"],
            &["client", "unpause"],
            &["debug", "sleep", "0"],
        ] {
            assert_eq!(permit(&reader, words), Err(Denied::Command), "{words:?}");
        }
    }

    #[test]
    fn every_data_command_has_a_category() {
        for spec in COMMANDS {
            let (name, category) = (spec.name, Category::of(spec));
            // And the transaction commands: every queued command is checked on its own; and the
            // scripting ones: every command a script runs is checked on its own.
            let connection = [
                "ping",
                "echo",
                "hello",
                "auth",
                "select",
                "quit",
                "reset",
                "client",
                "command",
                "time",
                // Reads the replicas' acknowledgements only.
                "wait",
                "multi",
                "exec",
                "discard",
                "watch",
                "unwatch",
                "eval",
                "evalsha",
                "eval_ro",
                "evalsha_ro",
                "script",
                // Pub/sub: held to the user's channel patterns instead.
                "publish",
                "spublish",
                "subscribe",
                "unsubscribe",
                "psubscribe",
                "punsubscribe",
                "ssubscribe",
                "sunsubscribe",
                "pubsub",
                // A container whose subcommands `User::permit` sorts: USAGE reads, the rest
                // is admin.
                "memory",
            ];
            assert_eq!(category.is_none(), connection.contains(&name), "{name}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
        let user = app1();
        assert!(!format!("{user:?}").contains(&format!("{:?}", sha256(b"pw1"))));
    }

    /// The `[[user]]` tables of a config file.
    #[derive(serde::Deserialize)]
    struct UserTables {
        #[serde(default)]
        user: Vec<RawUser>,
    }

    fn users_from(toml_text: &str, max_pattern_len: usize) -> Result<Vec<User>, Invalid> {
        let file: UserTables = toml::from_str(toml_text).expect("valid TOML");
        users(file.user, max_pattern_len)
    }

    const PW1_SHA256: &str = "c592df4a86933b92addc9842402ddf198c638ea9be58916ee6e3734e1e3152f8";

    #[test]
    fn a_user_key_pattern_longer_than_max_pattern_len_is_refused() {
        let user = |pattern: &str| {
            format!(
                r#"
                [[user]]
                name = "app1"
                password-sha256 = "{PW1_SHA256}"
                keys = ["{pattern}"]
                "#
            )
        };
        assert!(users_from(&user("sess:app1:*"), 16).is_ok());
        let error = users_from(&user(&"*".repeat(17)), 16)
            .unwrap_err()
            .to_string();
        assert!(error.contains("max-pattern-len (16 bytes)"), "{error}");
    }

    #[test]
    fn users_come_from_the_config_file() {
        let users = users_from(
            &format!(
                r#"
            [[user]]
            name = "app1"
            password-sha256 = "{PW1_SHA256}"
            keys = ["sess:app1:*"]
            categories = ["read", "write", "session"]
            session-prefix = "sess:app1:"
            [[user]]
            name = "ops"
            password-sha256 = "{}"
            keys = ["*"]
            categories = ["all"]
            channels = ["*"]
            "#,
                password_sha256("ops password")
            ),
            256,
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        let app1 = &users[0];
        assert_eq!(app1.name, "app1");
        assert_eq!(app1.password_sha256, Some(sha256(b"pw1")));
        assert!(app1.keys.allow(b"sess:app1:x") && !app1.keys.allow(b"sess:app2:x"));
        assert!(app1.categories.contains(Category::Session));
        assert!(!app1.categories.contains(Category::Admin));
        assert!(users[1].unrestricted());
        assert!(users[1].allow_channel(b"any", false));
        assert_eq!(users[1].password_sha256, Some(sha256(b"ops password")));
    }

    #[test]
    fn bad_users_are_refused_naming_the_setting() {
        let user = |extra: &str| {
            format!("[[user]]\nname = \"app1\"\npassword-sha256 = \"{PW1_SHA256}\"\n{extra}")
        };
        let cases = [
            (
                user("keys = [\"*\"]\ncategories = [\"reed\"]"),
                "user.categories",
            ),
            (
                user("keys = [\"sess:app1:*\"]\ncategories = [\"session\"]"),
                "user.session-prefix",
            ),
            (user("session-prefix = \"a b\""), "user.session-prefix"),
            (
                user("keys = [\"?*\"]\ncategories = [\"session\"]"),
                "user.session-prefix",
            ),
            (
                format!(
                    "{}\n[[user]]\nname = \"app2\"\npassword-sha256 = \"{PW1_SHA256}\"\n\
                     keys = [\"s:*\"]\ncategories = [\"session\"]\nsession-prefix = \"s:\"",
                    user("keys = [\"s:*\"]\ncategories = [\"session\"]\nsession-prefix = \"s:\"")
                ),
                "user.session-prefix",
            ),
            (
                "[[user]]\nname = \"app1\"\npassword-sha256 = \"+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f+f\""
                    .to_owned(),
                "user.password-sha256",
            ),
            (
                "[[user]]\nname = \"app1\"\npassword-sha256 = \"secret\"".to_owned(),
                "user.password-sha256",
            ),
            (
                format!("[[user]]\nname = \"default\"\npassword-sha256 = \"{PW1_SHA256}\""),
                "user.name",
            ),
            (format!("{}\n{}", user(""), user("")), "user.name"),
        ];
        for (text, setting) in cases {
            match users_from(&text, 256) {
                Err(Invalid { setting: s, .. }) => assert_eq!(s, setting, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let unknown_key = toml::from_str::<UserTables>(&user("pasword = \"x\""));
        assert!(
            unknown_key.is_err(),
            "unknown keys in a [[user]] are refused"
        );
    }

    #[test]
    fn the_password_can_come_from_a_file_but_only_once() {
        let path = std::env::temp_dir().join(format!("sessiond-pass-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let secret = Secret::from_settings(None, Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose(), "from-file");
        assert!(
            !format!("{secret:?}").contains("from-file"),
            "the password is redacted"
        );
        let both = Secret::from_settings(Some("flag".into()), Some(&path)).unwrap_err();
        assert!(both.to_string().contains("requirepass-file"), "{both}");
        std::fs::remove_file(&path).unwrap();
        let missing = Secret::from_settings(None, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("config file /"), "{missing}");
        let empty = Secret::from_settings(Some(String::new()), None).unwrap_err();
        assert!(empty.to_string().contains("an empty password"), "{empty}");
        assert!(Secret::from_settings(None, None).unwrap().is_none());
    }
}
