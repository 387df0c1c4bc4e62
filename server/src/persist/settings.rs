//! [`PersistConfig`] from the snapshot settings (`data-dir`, `dbfilename`, `snapshot-interval`,
//! `snapshot-journal-limit`), each left unset taking its default.

use std::path::PathBuf;
use std::time::Duration;

use super::aof::{AofConfig, AofSettings};
use super::PersistConfig;
use crate::setting::{Invalid, Period};

impl PersistConfig {
    /// The snapshot settings as given (`None`: the default) checked and turned into a config:
    /// the file name must be a plain name inside `dir`; a zero interval means "only on demand"
    /// and a zero journal limit "no bound".
    pub fn from_settings(
        dir: Option<PathBuf>,
        file_name: Option<String>,
        interval: Option<Period>,
        journal_limit_bytes: Option<u64>,
        shard_delay: Option<Duration>,
    ) -> Result<PersistConfig, Invalid> {
        let defaults = PersistConfig::default();
        let file_name = file_name.unwrap_or(defaults.file_name);
        if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".."
        {
            return Err(Invalid::new(
                "dbfilename",
                file_name,
                "must be a plain file name (the directory is --data-dir)",
            ));
        }
        Ok(PersistConfig {
            dir: dir.unwrap_or(defaults.dir),
            file_name,
            interval: interval.map_or(defaults.interval, Period::never_if_zero),
            journal_max_bytes: match journal_limit_bytes {
                None => defaults.journal_max_bytes,
                Some(0) => u64::MAX,
                Some(bytes) => bytes,
            },
            shard_delay: shard_delay.unwrap_or(defaults.shard_delay),
            load_gate: None,
            aof: defaults.aof,
        })
    }

    /// This config with the append-only log's settings `aof`.
    pub fn with_aof(self, aof: AofConfig) -> PersistConfig {
        PersistConfig { aof, ..self }
    }
}

impl AofConfig {
    /// The log's settings as given (`None`: the default) checked: the names must be plain
    /// names (the directory is `--data-dir`).
    pub fn from_settings(settings: AofSettings) -> Result<AofConfig, Invalid> {
        let defaults = AofConfig::default();
        let plain = |setting: &'static str, name: Option<String>, default: String| {
            let name = name.unwrap_or(default);
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Invalid::new(
                    setting,
                    name,
                    "must be a plain file name (the directory is --data-dir)",
                ));
            }
            Ok(name)
        };
        Ok(AofConfig {
            enabled: settings.enabled.unwrap_or(defaults.enabled),
            fsync: settings.fsync.unwrap_or(defaults.fsync),
            file_name: plain("appendfilename", settings.file_name, defaults.file_name)?,
            dir_name: plain("appenddirname", settings.dir_name, defaults.dir_name)?,
            rewrite_percentage: settings
                .rewrite_percentage
                .unwrap_or(defaults.rewrite_percentage),
            rewrite_min_size: settings
                .rewrite_min_size
                .unwrap_or(defaults.rewrite_min_size),
            load_truncated: settings.load_truncated.unwrap_or(defaults.load_truncated),
            base_shard_delay: settings
                .base_shard_delay
                .unwrap_or(defaults.base_shard_delay),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_settings_take_the_defaults_and_zero_turns_a_bound_off() {
        let config = PersistConfig::from_settings(None, None, None, None, None).unwrap();
        assert_eq!(config, PersistConfig::default());
        let zero = Some(Period(Duration::ZERO));
        let config = PersistConfig::from_settings(None, None, zero, Some(0), None).unwrap();
        assert_eq!(config.interval, None, "0: only on demand");
        assert_eq!(config.journal_max_bytes, u64::MAX, "0: no bound");
    }

    #[test]
    fn the_file_name_is_a_plain_name() {
        for name in ["", ".", "..", "a/b", "/dump.sdb"] {
            let error = PersistConfig::from_settings(None, Some(name.into()), None, None, None)
                .unwrap_err();
            assert_eq!(error.setting, "dbfilename", "{name:?}");
            assert!(error.reason.contains("--data-dir"), "{name:?}");
        }
        let config = PersistConfig::from_settings(None, Some("x.sdb".into()), None, None, None);
        assert_eq!(config.unwrap().file_name, "x.sdb");
    }
}
