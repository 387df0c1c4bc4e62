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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sessiond_protocol::cmd::{AclCategories, CommandSpec};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::glob;

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
    /// commands are admin ones, then `@session`, `@write`, `@read`; `None`: a connection command.
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
}

impl User {
    /// The `default` user: every key and command; `password` if one is required.
    pub fn default_user(password: Option<&Secret>) -> User {
        User {
            name: "default".to_owned(),
            password_sha256: password.map(|p| sha256(p.expose().as_bytes())),
            keys: KeyPatterns::All,
            categories: Categories::ALL,
            session_prefix: Bytes::new(),
        }
    }

    /// Whether the user may do everything (the permission check is skipped).
    pub fn unrestricted(&self) -> bool {
        self.keys == KeyPatterns::All && self.categories == Categories::ALL
    }

    /// Whether the user may run the command `args` (name first, arity already checked), the
    /// table row of which is `spec`: its category, then every key argument.
    pub fn permit(&self, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Denied> {
        let client_list =
            spec.name == "client" && args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"list"));
        let category = if client_list {
            Some(Category::Admin)
        } else {
            Category::of(spec)
        };
        if category.is_some_and(|c| !self.categories.contains(c)) {
            return Err(Denied::Command);
        }
        if spec.first_key <= 0 {
            return Ok(());
        }
        // Redis's key specification: positions first, first + step, ... up to last (negative:
        // counted from the end).
        let last = if spec.last_key < 0 {
            args.len()
                .saturating_sub(spec.last_key.unsigned_abs() as usize)
        } else {
            spec.last_key as usize
        };
        let step = spec.step.max(1) as usize;
        let mut position = spec.first_key as usize;
        while position <= last && position < args.len() {
            if !self.keys.allow(&args[position]) {
                return Err(Denied::Key);
            }
            position += step;
        }
        Ok(())
    }
}

/// Who may connect, and as whom.
#[derive(Clone)]
pub struct Auth {
    /// The `default` user; `None` when named users disabled it.
    default: Option<Arc<User>>,
    /// Named users by name.
    users: HashMap<String, Arc<User>>,
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
        let default = (requirepass.is_some() || users.is_empty())
            .then(|| Arc::new(User::default_user(requirepass)));
        Auth {
            default,
            users: users
                .iter()
                .map(|u| (u.name.clone(), Arc::new(u.clone())))
                .collect(),
        }
    }

    /// Whether clients must authenticate before other commands.
    pub fn required(&self) -> bool {
        self.initial_user().is_none()
    }

    /// The user a new connection starts as: the `default` user when it needs no password.
    pub fn initial_user(&self) -> Option<Arc<User>> {
        self.default
            .as_ref()
            .filter(|u| u.password_sha256.is_none())
            .cloned()
    }

    /// Whether the `default` user has a password (AUTH with one argument is meaningful).
    pub fn default_has_password(&self) -> bool {
        self.default
            .as_ref()
            .is_some_and(|u| u.password_sha256.is_some())
    }

    /// The user `name` (`None`: `default`) if `password` is theirs.
    pub fn check(&self, name: Option<&[u8]>, password: &[u8]) -> Option<Arc<User>> {
        let user = match name {
            None | Some(b"default") => self.default.as_ref(),
            Some(name) => std::str::from_utf8(name)
                .ok()
                .and_then(|name| self.users.get(name)),
        };
        // Hash even for an unknown user, so that it costs the same as a wrong password.
        let digest = sha256(password);
        let user = user?;
        match &user.password_sha256 {
            // Without a password the default user accepts any, like Redis's `nopass`.
            None => Some(user.clone()),
            Some(expected) => bool::from(digest.ct_eq(expected)).then(|| user.clone()),
        }
    }
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
            session_prefix: Bytes::from_static(b"sess:app1:"),
        }
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
    }

    #[test]
    fn every_data_command_has_a_category() {
        for spec in COMMANDS {
            let (name, category) = (spec.name, Category::of(spec));
            let connection = [
                "ping", "echo", "hello", "auth", "select", "quit", "reset", "client", "command",
                "time",
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
}
