//! Sizes and durations as they are written in config files, flags and CONFIG values: `64mb`,
//! `500ms`. The server's settings and the load generator's flags read them alike.

use std::time::Duration;

/// Parses a size with redis.conf units: `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb` powers
/// of 1024, case-insensitive; a bare number is bytes. `None` if it does not parse or overflows.
pub fn parse_size(text: &str) -> Option<u64> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Parses a duration with a unit: `ms`, `s`, `m`, `h`, `d`; a bare number is seconds. `None` if
/// it does not parse or overflows.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = split_number(text)?;
    let ms_per_unit: u64 = match unit.as_str() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(ms_per_unit).map(Duration::from_millis)
}

/// The leading decimal number of `text` and the rest, trimmed and lower-cased.
fn split_number(text: &str) -> Option<(u64, String)> {
    let text = text.trim().to_ascii_lowercase();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    Some((number.parse().ok()?, unit.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(parse_size("16mb"), Some(16 << 20));
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size(" 2 gb "), Some(2 << 30));
        assert_eq!(parse_size("12qb"), None);
        assert_eq!(parse_size("mb"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("18446744073709551615gb"), None);
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("1w"), None);
    }
}
