//! Connection URLs: `sessiond://[user[:password]@]host[:port][/db]`, and `redis://` with the
//! same shape, parsed into a [`NodeAddr`]; `sessionds://` and `rediss://` for TLS (feature
//! `tls`); and `redis+sentinel://[user:password@]host1[:port1][,host2[:port2]...]/master[/db]`,
//! a primary found through Redis Sentinel, parsed into a [`SentinelAddr`] (the form of
//! redis-sentinel-url, redis-vl and Prefect's clients).

use std::fmt;

use crate::{Error, Result};

/// The port of a `sessiond://` URL without one (the server's default).
pub const DEFAULT_PORT: u16 = 6380;

/// The port of a `redis://` URL without one (Redis's default).
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// Where one server listens and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeAddr {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    tls: bool,
    /// The database the URL's path names (`/3`); `None` without a path.
    database: Option<u32>,
}

impl NodeAddr {
    /// Parses `sessiond://[user[:password]@]host[:port][/db]` or the same with `redis://`;
    /// `sessionds://` and `rediss://` connect with TLS (feature `tls`), verifying the server's
    /// certificate against `host`. A path selects that database on every connection (as
    /// `redis://host/1` does for Redis clients).
    ///
    /// User and password may be percent-encoded (`p%40ss` for `p@ss`). A password without a
    /// user (`redis://:secret@host`) logs in as the `default` user, as Redis clients do.
    pub fn parse(url: &str) -> Result<NodeAddr> {
        let invalid = |why: &str| Error::config(format!("invalid url {:?}: {why}", redact(url)));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected sessiond://host:port"))?;
        let (default_port, tls) = match scheme.to_ascii_lowercase().as_str() {
            "sessiond" => (DEFAULT_PORT, false),
            "redis" => (DEFAULT_REDIS_PORT, false),
            "sessionds" => (DEFAULT_PORT, true),
            "rediss" => (DEFAULT_REDIS_PORT, true),
            "redis+sentinel" => return Err(invalid(
                "a redis+sentinel:// URL names the sentinels of a primary, not a node: give it to Builder::node",
            )),
            _ => return Err(invalid(
                "the scheme must be sessiond:// or redis:// (sessionds:// or rediss:// for TLS, redis+sentinel:// for a primary found through Sentinel)",
            )),
        };
        if tls && !cfg!(feature = "tls") {
            return Err(invalid(
                "TLS needs sessiond-client's `tls` feature (features = [\"tls\"])",
            ));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if path.contains('?') {
            return Err(invalid("remove the query"));
        }
        let database = parse_database(path.trim_start_matches('/')).map_err(invalid)?;
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = parse_credentials(credentials).map_err(invalid)?;
        let (host, port) = parse_host_port(host_port, default_port).map_err(invalid)?;
        Ok(NodeAddr {
            host,
            port,
            user,
            password,
            tls,
            database,
        })
    }

    /// The database the URL selects (its path), if it names one.
    pub fn database(&self) -> Option<u32> {
        self.database
    }

    /// Whether the connection uses TLS (`sessionds://`, `rediss://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as, if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `host:port`, as `TcpStream::connect` takes it (IPv6 addresses in brackets).
    pub(crate) fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host:port`; never the password. (The same with or without TLS: it is also the node's
/// identity for sharding, which must not move keys when a node switches to TLS.)
impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.socket_addr())
    }
}

/// Shows the user but never the password.
impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("database", &self.database)
            .finish()
    }
}

/// The port of a sentinel in a `redis+sentinel://` URL without one (Sentinel's default).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Most sentinels one URL may list.
const MAX_SENTINELS: usize = 64;

/// A primary found through Redis Sentinel: the sentinels to ask, the name they monitor it
/// under, and how to log in to whichever node they name.
///
/// Parsed from `redis+sentinel://[user:password@]host1[:port1][,host2[:port2]...]/master[/db]`
/// (a sentinel's port defaults to 26379). The credentials and the database are the primary's;
/// the sentinels are asked without a login.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelAddr {
    sentinels: Vec<NodeAddr>,
    master: String,
    /// The primary's login and database; its host and port are the sentinels' answer.
    login: NodeAddr,
}

impl SentinelAddr {
    /// Parses a `redis+sentinel://` URL; see [`SentinelAddr`].
    pub fn parse(url: &str) -> Result<SentinelAddr> {
        let invalid = |why: &str| Error::config(format!("invalid url {:?}: {why}", redact(url)));
        let rest = url
            .split_once("://")
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("redis+sentinel"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| invalid("expected redis+sentinel://host:port,host:port/master"))?;
        if rest.contains('?') {
            return Err(invalid("remove the query"));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("the path must name the primary: /master[/db]"))?;
        let (master, database) = match path.split_once('/') {
            Some((master, database)) => (master, database),
            None => (path, ""),
        };
        let master = percent_decode(master).ok_or_else(|| invalid("bad percent-encoding"))?;
        if master.is_empty() {
            return Err(invalid("the path must name the primary: /master[/db]"));
        }
        let database = parse_database(database).map_err(invalid)?;
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, authority),
        };
        let (user, password) = parse_credentials(credentials).map_err(invalid)?;
        let mut sentinels = Vec::new();
        for host_port in hosts.split(',') {
            let (host, port) =
                parse_host_port(host_port, DEFAULT_SENTINEL_PORT).map_err(invalid)?;
            if sentinels.len() == MAX_SENTINELS {
                return Err(invalid("more than 64 sentinels"));
            }
            sentinels.push(NodeAddr {
                host,
                port,
                user: None,
                password: None,
                tls: false,
                // A sentinel has no databases: never SELECT the builder's.
                database: Some(0),
            });
        }
        Ok(SentinelAddr {
            sentinels,
            master,
            login: NodeAddr {
                host: String::new(),
                port: 0,
                user,
                password,
                tls: false,
                database,
            },
        })
    }

    /// The sentinels, in the URL's order.
    pub fn sentinels(&self) -> &[NodeAddr] {
        &self.sentinels
    }

    /// The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub fn master(&self) -> &str {
        &self.master
    }

    /// The database the URL selects on the primary, if it names one.
    pub fn database(&self) -> Option<u32> {
        self.login.database
    }

    /// The user to log in to the primary as, if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.login.user.as_deref()
    }

    /// The primary at `host:port` (as a sentinel named it), with the URL's login and database.
    pub(crate) fn primary_at(&self, host: String, port: u16) -> NodeAddr {
        NodeAddr {
            host,
            port,
            ..self.login.clone()
        }
    }
}

/// `master@sentinel1,sentinel2`; never the password.
impl fmt::Display for SentinelAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@", self.master)?;
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{sentinel}")?;
        }
        Ok(())
    }
}

/// Shows the user but never the password.
impl fmt::Debug for SentinelAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelAddr")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("login", &self.login)
            .finish()
    }
}

/// The database a URL's path names: `None` for an empty path.
fn parse_database(path: &str) -> std::result::Result<Option<u32>, &'static str> {
    match path {
        "" => Ok(None),
        index => index
            .parse::<u32>()
            .map(Some)
            .map_err(|_| "the path must be a database number (/0, /1...)"),
    }
}

/// `user:password`, `:password` or nothing, percent-decoded: (user, password).
type Credentials = (Option<String>, Option<String>);

fn parse_credentials(credentials: Option<&str>) -> std::result::Result<Credentials, &'static str> {
    let Some(credentials) = credentials else {
        return Ok((None, None));
    };
    let (user, password) = match credentials.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (credentials, None),
    };
    let user = percent_decode(user).ok_or("bad percent-encoding")?;
    let password = password
        .map(|p| percent_decode(p).ok_or("bad percent-encoding"))
        .transpose()?;
    match (user.is_empty(), password) {
        (true, None) => Ok((None, None)),
        (true, Some(password)) => Ok((None, Some(password))),
        (false, None) => Err("a user needs a password (user:password@)"),
        (false, Some(password)) => Ok((Some(user), Some(password))),
    }
}

/// `host[:port]` or `[v6]:port`, with `default_port` where none is given.
fn parse_host_port(
    host_port: &str,
    default_port: u16,
) -> std::result::Result<(String, u16), &'static str> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the host"),
        };
        (host, port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or("the port must be a number from 1 to 65535")?,
    };
    Ok((host.to_owned(), port))
}

/// The URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<credentials>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn parses_the_usual_shapes() {
        let plain = NodeAddr::parse("sessiond://127.0.0.1:7000").unwrap();
        assert_eq!(
            (plain.host(), plain.port(), plain.user()),
            ("127.0.0.1", 7000, None)
        );

        let defaulted = NodeAddr::parse("sessiond://cache.internal").unwrap();
        assert_eq!(defaulted.port(), DEFAULT_PORT);
        assert_eq!(
            NodeAddr::parse("redis://h").unwrap().port(),
            DEFAULT_REDIS_PORT
        );

        let login = NodeAddr::parse("sessiond://web:p%40ss@h:1/0").unwrap();
        assert_eq!(login.user(), Some("web"));
        assert_eq!(login.password(), Some("p@ss"));
        assert_eq!(login.database(), Some(0));
        assert_eq!(
            NodeAddr::parse("redis://h:1/12").unwrap().database(),
            Some(12)
        );
        assert_eq!(NodeAddr::parse("redis://h:1/").unwrap().database(), None);
        assert_eq!(plain.database(), None);

        let password_only = NodeAddr::parse("redis://:secret@h:2").unwrap();
        assert_eq!(
            (password_only.user(), password_only.password()),
            (None, Some("secret"))
        );

        let v6 = NodeAddr::parse("sessiond://[::1]:6380").unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.to_string(), "[::1]:6380");
        assert!(!v6.tls());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_schemes() {
        let rediss = NodeAddr::parse("rediss://:pw@cache.internal").unwrap();
        assert!(rediss.tls());
        assert_eq!(rediss.port(), DEFAULT_REDIS_PORT);
        assert_eq!(rediss.password(), Some("pw"));
        let sessionds = NodeAddr::parse("SESSIONDS://h:6381").unwrap();
        assert!(sessionds.tls());
        assert_eq!(sessionds.to_string(), "h:6381");
        assert_ne!(sessionds, NodeAddr::parse("sessiond://h:6381").unwrap());
    }

    #[test]
    fn rejects_what_it_cannot_use_without_showing_the_password() {
        for url in [
            "127.0.0.1:6380",
            "http://h:1",
            "sessionds://",
            "sessiond://h:0",
            "sessiond://h:99999",
            "sessiond://h:1/x",
            "sessiond://h:1/-1",
            "sessiond://h:1/0?db=1",
            "sessiond://:1",
            "sessiond://user@h:1",
            "sessiond://[::1",
        ] {
            let error = NodeAddr::parse(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{url}");
        }
        #[cfg(not(feature = "tls"))]
        {
            let error = NodeAddr::parse("rediss://u:hunter2@h:1").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidConfig);
            assert!(error.to_string().contains("`tls` feature"), "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let error = NodeAddr::parse("sessiond://u:hunter2@h:1/nine").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            !format!("{:?}", NodeAddr::parse("sessiond://u:hunter2@h").unwrap())
                .contains("hunter2")
        );
    }

    #[test]
    fn sentinel_urls() {
        let url = "redis+sentinel://web:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:5/my%20master/3";
        let addr = SentinelAddr::parse(url).unwrap();
        let sentinels: Vec<String> = addr.sentinels().iter().map(|s| s.to_string()).collect();
        assert_eq!(sentinels, ["10.0.0.1:26380", "10.0.0.2:26379", "[::1]:5"]);
        assert!(addr.sentinels().iter().all(|s| s.password().is_none()));
        assert_eq!(addr.master(), "my master");
        assert_eq!((addr.database(), addr.user()), (Some(3), Some("web")));
        let primary = addr.primary_at("127.0.0.1".to_owned(), 7000);
        assert_eq!(primary.to_string(), "127.0.0.1:7000");
        assert_eq!(primary.password(), Some("p@ss"));
        assert_eq!(primary.database(), Some(3));
        assert_eq!(
            addr.to_string(),
            "my master@10.0.0.1:26380,10.0.0.2:26379,[::1]:5"
        );
        assert!(!format!("{addr:?}").contains("p@ss"));

        let plain = SentinelAddr::parse("REDIS+SENTINEL://h/m").unwrap();
        assert_eq!(plain.database(), None);
        assert_eq!(plain.sentinels()[0].port(), DEFAULT_SENTINEL_PORT);

        for url in [
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel://h//1",
            "redis+sentinel://h/m/x",
            "redis+sentinel://h,/m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h/m?db=1",
            "redis+sentinel://user@h/m",
            "redis://h/m",
        ] {
            let error = SentinelAddr::parse(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{url}");
        }
        let many = format!("redis+sentinel://{}/m", vec!["h"; 65].join(","));
        assert!(SentinelAddr::parse(&many).is_err());
        let error = NodeAddr::parse("redis+sentinel://u:hunter2@h/m").unwrap_err();
        assert!(error.to_string().contains("Builder::node"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
