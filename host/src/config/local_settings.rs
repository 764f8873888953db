//! `local.settings.toml`: local.settings.json in TOML (app settings and local host options).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// The local settings file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSettings {
    #[serde(rename = "IsEncrypted")]
    pub is_encrypted: bool,
    /// App settings: given to functions as environment variables.
    #[serde(rename = "Values")]
    values: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(rename = "Host")]
    pub host: HostSection,
    #[serde(rename = "ConnectionStrings")]
    pub connection_strings: BTreeMap<String, String>,
}

/// `[Host]`: options of the local host process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    #[serde(rename = "LocalHttpPort")]
    pub local_http_port: u16,
    /// Allowed origins, comma-separated; "*" for any.
    #[serde(rename = "CORS")]
    pub cors: Option<String>,
    #[serde(rename = "CORSCredentials")]
    pub cors_credentials: bool,
    /// Enforce keys on loopback too (as `host start --enableAuth`).
    #[serde(rename = "EnableAuth")]
    pub enable_auth: bool,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            local_http_port: 7071,
            cors: None,
            cors_credentials: false,
            enable_auth: false,
        }
    }
}

/// App settings after the host's environment has had its say.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    /// Name → value, as functions see them.
    pub values: BTreeMap<String, String>,
    /// Keys of the file that the environment overrode (Core Tools prints these).
    pub overridden: Vec<String>,
}

impl AppSettings {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

impl LocalSettings {
    /// Read `path`; a missing file means no app settings and port 7071.
    pub fn load(path: &Path) -> Result<LocalSettings, ConfigError> {
        if !path.exists() {
            return Ok(LocalSettings::default());
        }
        let (settings, text): (LocalSettings, String) = super::read_toml(path)?;
        settings.validate(path, &text)?;
        Ok(settings)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        if self.is_encrypted {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                message: "IsEncrypted = true is not supported: store the values in clear text \
                          and set IsEncrypted = false"
                    .into(),
            });
        }
        for (key, value) in &self.values {
            if value.get_ref().is_table() || value.get_ref().is_array() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: Some(super::line_of(text, value.span())),
                    message: format!(
                        "[Values] {key} must be a string, number or boolean (app settings are \
                         environment variables)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The app settings; a variable already set in `env` wins over the file, as
    /// in Azure Functions Core Tools.
    pub fn app_settings(&self, env: impl Fn(&str) -> Option<String>) -> AppSettings {
        let mut out = AppSettings::default();
        for (key, value) in &self.values {
            let from_file = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match env(key) {
                Some(v) => {
                    out.overridden.push(key.clone());
                    out.values.insert(key.clone(), v);
                }
                None => {
                    out.values.insert(key.clone(), from_file);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LocalSettings, ConfigError> {
        let path = Path::new("local.settings.toml");
        let s: LocalSettings = super::super::parse_toml(path, text)?;
        s.validate(path, text)?;
        Ok(s)
    }

    #[test]
    fn values_and_host_section() {
        let s = parse(
            r#"
IsEncrypted = false
[Values]
AzureWebJobsStorage = "UseDevelopmentStorage=true"
RETRIES = 3
[Host]
LocalHttpPort = 7072
CORS = "*"
"#,
        )
        .unwrap();
        assert_eq!(s.host.local_http_port, 7072);
        assert_eq!(s.host.cors.as_deref(), Some("*"));
        let app = s.app_settings(|_| None);
        assert_eq!(
            app.get("AzureWebJobsStorage"),
            Some("UseDevelopmentStorage=true")
        );
        assert_eq!(app.get("RETRIES"), Some("3"));
        assert!(app.overridden.is_empty());
    }

    #[test]
    fn environment_wins_and_is_reported() {
        let s = parse("[Values]\nA = \"file\"\nB = \"file\"\n").unwrap();
        let app = s.app_settings(|k| (k == "B").then(|| "env".to_string()));
        assert_eq!(app.get("A"), Some("file"));
        assert_eq!(app.get("B"), Some("env"));
        assert_eq!(app.overridden, vec!["B".to_string()]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("[Values]\nA = \"x\"\nB = [1, 2]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "local.settings.toml line 3: [Values] B must be a string, number or boolean (app \
             settings are environment variables)"
        );
        let e = parse("[Host]\nLocalHttpPort = \"seven\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("IsEncrypted = true").unwrap_err().to_string();
        assert!(e.contains("IsEncrypted = false"), "{e}");
    }
}
