//! Typed setting values — sizes, durations, yes/no, addresses — as clap reads them from flags and
//! `SESSIOND_*` variables and serde from the TOML file, so that a bad value is refused where it
//! is read; and [`Invalid`], the error naming a setting that the domain checks (users in `auth`,
//! TLS in `tls`, snapshots in `persist`) return. A leaf module: the domains import it, it
//! imports none of them (the words of their own settings are read in `config/raw.rs`).

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use sessiond_protocol::units::{parse_duration, parse_size};

/// A setting that cannot be used: the setting, the value given and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting} {value:?}: {reason}")]
pub struct Invalid {
    /// The flag name.
    pub setting: &'static str,
    /// The value given (never a secret's).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Invalid {
    /// The error for `setting`.
    pub fn new(setting: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            setting,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// `value` if it lies in `min..=max`, else the error naming `setting`.
pub fn range(setting: &'static str, value: u64, min: u64, max: u64) -> Result<u64, Invalid> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        let reason = format!("must be between {min} and {max}");
        Err(Invalid::new(setting, value.to_string(), reason))
    }
}

/// A value a setting's text parses into; the error is the reason, which is told after the
/// setting and the text (`invalid maxmemory "lots": expected a size ...`).
pub trait Value: Sized + Clone + Send + Sync + 'static {
    /// Parses the text of a flag, variable or TOML string.
    fn parse(text: &str) -> Result<Self, String>;
}

/// Bytes, with redis.conf units (`64mb`; see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Value for Size {
    fn parse(text: &str) -> Result<Self, String> {
        parse_size(text)
            .map(Size)
            .ok_or_else(|| "expected a size such as 512, 64kb or 16mb".to_owned())
    }
}

/// A duration with a unit (`500ms`, `10s`; see [`parse_duration`]); zero is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

impl Period {
    /// The duration, where zero means "never" (`--timeout 0`, `--snapshot-interval 0`).
    pub fn never_if_zero(self) -> Option<Duration> {
        Some(self.0).filter(|d| !d.is_zero())
    }
}

impl Value for Period {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
            .map(Period)
            .ok_or_else(|| "expected a duration such as 500ms, 10s, 30m or 8h".to_owned())
    }
}

/// A duration where a bare number counts milliseconds, as redis.conf's `busy-reply-threshold`
/// does (`5000`), or with a unit (`5s`, `500ms`); zero is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl Value for Millis {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(|ms| Millis(Duration::from_millis(ms)))
                .map_err(|_| "the number is too large".to_owned());
        }
        parse_duration(text)
            .map(Millis)
            .ok_or_else(|| "expected milliseconds (5000) or a duration such as 5s".to_owned())
    }
}

/// A duration longer than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositivePeriod(pub Duration);

impl Value for PositivePeriod {
    fn parse(text: &str) -> Result<Self, String> {
        match Period::parse(text)? {
            Period(duration) if duration.is_zero() => Err("must be positive".to_owned()),
            Period(duration) => Ok(PositivePeriod(duration)),
        }
    }
}

/// `yes` or `no`, as redis.conf writes booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YesNo(pub bool);

impl Value for YesNo {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "yes" => Ok(YesNo(true)),
            "no" => Ok(YesNo(false)),
            _ => Err("expected yes or no".to_owned()),
        }
    }
}

/// An IPv4 or IPv6 address to listen on; surrounding spaces are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub IpAddr);

impl Value for Address {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map(Address)
            .map_err(|_| "expected an IPv4 or IPv6 address".to_owned())
    }
}

/// The clap value parser of a [`Value`]: its error names the flag as the setting.
#[derive(Debug)]
pub struct Parser<T>(PhantomData<T>);

impl<T> Clone for Parser<T> {
    fn clone(&self) -> Self {
        Parser(PhantomData)
    }
}

impl<T> Default for Parser<T> {
    fn default() -> Self {
        Parser(PhantomData)
    }
}

impl<T: Value> TypedValueParser for Parser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let Some(text) = value.to_str() else {
            return Err(clap::Error::new(ErrorKind::InvalidUtf8).with_cmd(cmd));
        };
        T::parse(text).map_err(|reason| {
            let setting = arg.and_then(clap::Arg::get_long).unwrap_or_default();
            let message = format!("invalid {setting} {text:?}: {reason}\n");
            clap::Error::raw(ErrorKind::ValueValidation, message)
        })
    }
}

/// Lets clap's derive and serde's read each type through its [`Value`] impl.
macro_rules! read_as_setting {
    ($($value:ty),* $(,)?) => {$(
        impl clap::builder::ValueParserFactory for $value {
            type Parser = $crate::setting::Parser<$value>;

            fn value_parser() -> Self::Parser {
                $crate::setting::Parser::default()
            }
        }

        impl<'de> serde::Deserialize<'de> for $value {
            fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                let text = String::deserialize(deserializer)?;
                <$value as $crate::setting::Value>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

pub(crate) use read_as_setting;

read_as_setting!(Size, Period, PositivePeriod, YesNo, Address);

impl clap::builder::ValueParserFactory for Millis {
    type Parser = Parser<Millis>;

    fn value_parser() -> Self::Parser {
        Parser::default()
    }
}

/// A TOML file may give milliseconds as a number (`busy-reply-threshold = 5000`), as redis.conf
/// does, or as text.
impl<'de> serde::Deserialize<'de> for Millis {
    fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(u64),
            Text(String),
        }
        match Given::deserialize(deserializer)? {
            Given::Number(ms) => Ok(Millis(Duration::from_millis(ms))),
            Given::Text(text) => Millis::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_say_what_was_expected() {
        assert_eq!(Size::parse("16mb"), Ok(Size(16 << 20)));
        assert_eq!(Period::parse("0"), Ok(Period(Duration::ZERO)));
        assert_eq!(PositivePeriod::parse("0s"), Err("must be positive".into()));
        assert_eq!(YesNo::parse("no"), Ok(YesNo(false)));
        assert!(YesNo::parse("off").unwrap_err().contains("yes or no"));
        assert_eq!(Millis::parse("5000"), Ok(Millis(Duration::from_secs(5))));
        assert_eq!(Millis::parse("2s"), Ok(Millis(Duration::from_secs(2))));
        assert!(Millis::parse("soon").is_err());
        assert_eq!(
            Address::parse(" ::1 "),
            Ok(Address(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])))
        );
    }

    #[test]
    fn a_toml_value_is_read_as_a_string() {
        #[derive(serde::Deserialize)]
        struct File {
            size: Size,
        }
        let file: File = toml::from_str("size = \"2kb\"").unwrap();
        assert_eq!(file.size, Size(2048));
        let error = toml::from_str::<File>("size = 2048").err().unwrap();
        assert!(error.message().contains("expected a string"), "{error}");
        let error = toml::from_str::<File>("size = \"lots\"").err().unwrap();
        assert!(error.message().contains("expected a size"), "{error}");
    }
}
