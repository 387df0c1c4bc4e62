//! Connection URLs: `sessiond://[user[:password]@]host[:port][/db]`, and `redis://` with the
//! same shape, parsed into a [`NodeAddr`]; `sessionds://` and `rediss://` for TLS (feature
//! `tls`).

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
            _ => return Err(invalid(
                "the scheme must be sessiond:// or redis:// (sessionds:// or rediss:// for TLS)",
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
        let database = match path.trim_start_matches('/') {
            "" => None,
            index => Some(
                index
                    .parse::<u32>()
                    .map_err(|_| invalid("the path must be a database number (/0, /1...)"))?,
            ),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (credentials, None),
                };
                let user = percent_decode(user).ok_or_else(|| invalid("bad percent-encoding"))?;
                let password = password
                    .map(|p| percent_decode(p).ok_or_else(|| invalid("bad percent-encoding")))
                    .transpose()?;
                match (user.is_empty(), password) {
                    (true, None) => (None, None),
                    (true, Some(password)) => (None, Some(password)),
                    (false, None) => {
                        return Err(invalid("a user needs a password (user:password@)"))
                    }
                    (false, Some(password)) => (Some(user), Some(password)),
                }
            }
        };
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(invalid("unexpected text after the host")),
            };
            (host, port)
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        Ok(NodeAddr {
            host: host.to_owned(),
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
}
