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

/// A size as [`parse_size`] reads it: in the largest of `gb`, `mb`, `kb` that divides it, else
/// in bytes (`16mb`, `64kb`, `256`).
pub fn format_size(bytes: u64) -> String {
    let unit = [("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)]
        .into_iter()
        .find(|&(_, size)| bytes != 0 && bytes.is_multiple_of(size));
    match unit {
        Some((name, size)) => format!("{}{name}", bytes / size),
        None => bytes.to_string(),
    }
}

/// A duration as [`parse_duration`] reads it: in the largest unit that divides it, as people
/// write them: days, hours and minutes only for two or more (`60s`, `30m`, `8h`, `100ms`, `0`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0".to_owned();
    }
    let units = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let unit = units
        .into_iter()
        .find(|&(name, size)| ms.is_multiple_of(size) && (ms / size >= 2 || name == "s"));
    match unit {
        Some((name, size)) => format!("{}{name}", ms / size),
        None => format!("{ms}ms"),
    }
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

    #[test]
    fn sizes_and_durations_are_written_as_they_are_read() {
        for (bytes, text) in [
            (16 << 20, "16mb"),
            (64 << 10, "64kb"),
            (256, "256"),
            (0, "0"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Some(bytes));
        }
        assert_eq!(format_size(2 << 30), "2gb");
        for (ms, text) in [
            (100, "100ms"),
            (1_000, "1s"),
            (10_000, "10s"),
            (60_000, "60s"),
            (1_800_000, "30m"),
            (3_600_000, "60m"),
            (8 * 3_600_000, "8h"),
            (86_400_000, "24h"),
            (2 * 86_400_000, "2d"),
            (0, "0"),
        ] {
            let duration = Duration::from_millis(ms);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Some(duration));
        }
    }
}
