//! The three configuration files: `host.toml`, `local.settings.toml`, `function.toml`.
//!
//! Each mirrors its Azure Functions JSON counterpart key for key, so a user can
//! translate mechanically; defaults are Azure's. Every error names the file and,
//! where TOML knows it, the line.

mod allowed_hosts;
pub mod function_toml;
mod host_toml;
mod local_settings;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use allowed_hosts::AllowedHosts;
pub use function_toml::{AuthLevel, FunctionDef, FunctionFile, Trigger};
pub use host_toml::{HostConfig, HttpExtension, ServerSection, WasmSection, valid_hub_name};
pub use local_settings::{AppSettings, HostSection, LocalSettings};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type; the message
    /// carries TOML's line, column and snippet.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parses but is not allowed.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

/// Read and parse a TOML file into `T`.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value = parse_toml(path, &text)?;
    Ok((value, text))
}

pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// The 1-based line of byte offset `span.start` in `text`.
pub(crate) fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Parse Azure's `hh:mm:ss` (also `d.hh:mm:ss` and `hh:mm:ss.fff`) durations.
pub fn parse_timespan(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration: use \"hh:mm:ss\", e.g. \"00:05:00\"");
    let (days, rest) = match s.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().map_err(|_| bad())?, rest),
        _ => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return Err(bad());
    };
    let h: u64 = h.parse().map_err(|_| bad())?;
    let m: u64 = m.parse().map_err(|_| bad())?;
    let sec: f64 = sec.parse().map_err(|_| bad())?;
    if m >= 60 || !(0.0..60.0).contains(&sec) {
        return Err(bad());
    }
    Ok(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(sec))
}

/// serde adapter for `hh:mm:ss` fields.
pub(crate) fn timespan<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_timespan(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_parse_like_azure() {
        assert_eq!(parse_timespan("00:05:00"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_timespan("01:00:30"), Ok(Duration::from_secs(3630)));
        assert_eq!(
            parse_timespan("1.00:00:00"),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_timespan("00:00:01.5"),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_timespan("5m").is_err());
        assert!(parse_timespan("00:61:00").is_err());
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 4..5), 3);
        assert_eq!(line_of("a", 0..1), 1);
    }
}
