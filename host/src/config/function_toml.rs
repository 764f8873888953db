//! `function.toml`: the functions of one folder and their triggers (function.json in TOML).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{AllowedHosts, ConfigError, line_of};

/// A parsed, validated `function.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionFile {
    /// The component file named by `component = "..."`, if any (else the folder's one `.wasm`).
    pub component: Option<String>,
    /// `allowedOutboundHosts`: where the folder's functions may send HTTP requests.
    pub allowed_outbound_hosts: AllowedHosts,
    pub functions: Vec<FunctionDef>,
}

/// One `[[functions]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    pub trigger: Trigger,
    /// Line of the entry in function.toml, for errors found later (route clashes, ...).
    pub line: usize,
}

/// A function's trigger, with the keys function.json uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Http {
        /// Upper-case methods; `None` means every method.
        methods: Option<Vec<String>>,
        /// The route template; the function name when not given.
        route: String,
        auth_level: AuthLevel,
    },
    Queue {
        queue_name: String,
        connection: String,
    },
    Blob {
        path: String,
        connection: String,
    },
    Timer {
        /// NCRONTAB with seconds (`0 */5 * * * *`) or a TimeSpan (`00:00:30`).
        schedule: String,
        /// Also run once when the host starts.
        run_on_startup: bool,
        /// Keep the schedule status in storage, so a missed occurrence runs late (default on).
        use_monitor: bool,
    },
    Orchestration,
    Activity,
    Entity,
}

impl Trigger {
    /// The function.json name of the trigger type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::Http { .. } => "httpTrigger",
            Trigger::Queue { .. } => "queueTrigger",
            Trigger::Blob { .. } => "blobTrigger",
            Trigger::Timer { .. } => "timerTrigger",
            Trigger::Orchestration => "orchestrationTrigger",
            Trigger::Activity => "activityTrigger",
            Trigger::Entity => "entityTrigger",
        }
    }
}

/// Who may call an HTTP function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

impl fmt::Display for AuthLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthLevel::Anonymous => "anonymous",
            AuthLevel::Function => "function",
            AuthLevel::Admin => "admin",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    component: Option<String>,
    #[serde(rename = "allowedOutboundHosts")]
    allowed_outbound_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    functions: Vec<Spanned<RawFunction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    name: Spanned<String>,
    trigger: Spanned<RawTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: String,
    methods: Option<Vec<String>>,
    route: Option<String>,
    auth_level: Option<AuthLevel>,
    queue_name: Option<String>,
    path: Option<String>,
    connection: Option<String>,
    schedule: Option<String>,
    run_on_startup: Option<bool>,
    use_monitor: Option<bool>,
}

const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
];

const TRIGGER_TYPES: &str = "httpTrigger, queueTrigger, blobTrigger, timerTrigger, \
                             orchestrationTrigger, activityTrigger, entityTrigger";

impl FunctionFile {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<FunctionFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse and validate `text`, the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<FunctionFile, ConfigError> {
        let raw: RawFile = super::parse_toml(path, text)?;
        let invalid = |span: std::ops::Range<usize>, message: String| ConfigError::Invalid {
            path: PathBuf::from(path),
            line: Some(line_of(text, span)),
            message,
        };
        if raw.functions.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                message: "no functions: add a [[functions]] entry with a name and a trigger".into(),
            });
        }
        if let Some(c) = &raw.component
            && (c.contains('/') || c.contains('\\') || !c.ends_with(".wasm"))
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                message: format!("component = \"{c}\" must be a .wasm file name in this folder"),
            });
        }
        let allowed_outbound_hosts = match &raw.allowed_outbound_hosts {
            Some(list) => AllowedHosts::parse(list.get_ref())
                .map_err(|message| invalid(list.span(), message))?,
            None => AllowedHosts::default(),
        };
        let mut seen = HashSet::new();
        let mut functions = Vec::new();
        for f in raw.functions {
            let line = line_of(text, f.span());
            let f = f.into_inner();
            let name = f.name.get_ref().clone();
            if !valid_function_name(&name) {
                return Err(invalid(
                    f.name.span(),
                    format!(
                        "'{name}' is not a valid function name: use letters, digits, '_' and \
                         '-', starting with a letter (at most 127)"
                    ),
                ));
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(invalid(
                    f.name.span(),
                    format!("function '{name}' is defined twice"),
                ));
            }
            let span = f.trigger.span();
            let trigger = convert_trigger(&name, f.trigger.into_inner())
                .map_err(|message| invalid(span, message))?;
            functions.push(FunctionDef {
                name,
                trigger,
                line,
            });
        }
        Ok(FunctionFile {
            component: raw.component,
            allowed_outbound_hosts,
            functions,
        })
    }
}

/// Azure's rules for queue names: 3-63 characters, lower-case letters,
/// digits and single dashes, starting and ending with a letter or digit.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    check_storage_name(name)
}

/// Azure's rules for container names (the same as for queues), plus the
/// special `$root`, `$logs` and `$web` containers.
pub fn check_container_name(name: &str) -> Result<(), String> {
    if matches!(name, "$root" | "$logs" | "$web") {
        return Ok(());
    }
    check_storage_name(name)
}

fn check_storage_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "is {} characters long; Azure allows 3 to 63",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains '{c}'; Azure allows lower-case letters, digits and '-' only"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("starts or ends with '-'; Azure wants a letter or digit there".into());
    }
    if name.contains("--") {
        return Err("contains '--'; Azure does not allow consecutive dashes".into());
    }
    Ok(())
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn convert_trigger(function: &str, t: RawTrigger) -> Result<Trigger, String> {
    // Keys that belong to another trigger type are an error, not silently ignored.
    let allowed: &[&str] = match t.kind.as_str() {
        "httpTrigger" => &["methods", "route", "authLevel"],
        "queueTrigger" => &["queueName", "connection"],
        "blobTrigger" => &["path", "connection"],
        "timerTrigger" => &["schedule", "runOnStartup", "useMonitor"],
        "orchestrationTrigger" | "activityTrigger" | "entityTrigger" => &[],
        other => {
            return Err(format!(
                "function '{function}': unknown trigger type '{other}'; expected one of {TRIGGER_TYPES}"
            ));
        }
    };
    let present = [
        ("methods", t.methods.is_some()),
        ("route", t.route.is_some()),
        ("authLevel", t.auth_level.is_some()),
        ("queueName", t.queue_name.is_some()),
        ("path", t.path.is_some()),
        ("connection", t.connection.is_some()),
        ("schedule", t.schedule.is_some()),
        ("runOnStartup", t.run_on_startup.is_some()),
        ("useMonitor", t.use_monitor.is_some()),
    ];
    if let Some((key, _)) = present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
        return Err(format!(
            "function '{function}': '{key}' does not apply to a {} (it takes: {})",
            t.kind,
            if allowed.is_empty() {
                "no other keys".to_string()
            } else {
                allowed.join(", ")
            }
        ));
    }
    let required = |key: &str, v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| format!("function '{function}': a {} needs '{key}'", t.kind))
    };
    let connection = t
        .connection
        .clone()
        .unwrap_or_else(|| "AzureWebJobsStorage".into());
    Ok(match t.kind.as_str() {
        "httpTrigger" => {
            let methods = match t.methods {
                None => None,
                Some(ms) => {
                    let mut out = Vec::new();
                    for m in ms {
                        let upper = m.to_ascii_uppercase();
                        if !METHODS.contains(&upper.as_str()) {
                            return Err(format!(
                                "function '{function}': unknown HTTP method '{m}'; expected \
                                 some of {}",
                                METHODS.join(", ").to_ascii_lowercase()
                            ));
                        }
                        if !out.contains(&upper) {
                            out.push(upper);
                        }
                    }
                    if out.is_empty() {
                        return Err(format!(
                            "function '{function}': methods = [] allows nothing; leave it out \
                             to allow every method"
                        ));
                    }
                    Some(out)
                }
            };
            let route = t.route.unwrap_or_else(|| function.to_string());
            Trigger::Http {
                methods,
                route: route.trim_matches('/').to_string(),
                auth_level: t.auth_level.unwrap_or(AuthLevel::Function),
            }
        }
        "queueTrigger" => {
            let queue_name = required("queueName", t.queue_name)?;
            check_queue_name(&queue_name)
                .map_err(|why| format!("function '{function}': queueName '{queue_name}' {why}"))?;
            Trigger::Queue {
                queue_name,
                connection,
            }
        }
        "blobTrigger" => {
            let path = required("path", t.path)?;
            let container = path.split('/').next().unwrap_or_default();
            if !path.contains('/') || path.ends_with('/') {
                return Err(format!(
                    "function '{function}': path '{path}' must be 'container/pattern', e.g. \
                     'samples/{{name}}'"
                ));
            }
            crate::triggers::blob_path::BlobPath::parse(&path)
                .map_err(|why| format!("function '{function}': {why}"))?;
            check_container_name(container).map_err(|why| {
                format!("function '{function}': container '{container}' of path '{path}' {why}")
            })?;
            Trigger::Blob { path, connection }
        }
        "timerTrigger" => Trigger::Timer {
            schedule: {
                let schedule = required("schedule", t.schedule)?;
                crate::triggers::schedule::Schedule::parse(&schedule)
                    .map_err(|why| format!("function '{function}': {why}"))?;
                schedule
            },
            run_on_startup: t.run_on_startup.unwrap_or(false),
            use_monitor: t.use_monitor.unwrap_or(true),
        },
        "orchestrationTrigger" => Trigger::Orchestration,
        "activityTrigger" => Trigger::Activity,
        _ => Trigger::Entity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FunctionFile, String> {
        FunctionFile::parse(Path::new("functions/x/function.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn design_example_parses() {
        let f = parse(
            r#"
[[functions]]
name = "starter_function"
trigger = { type = "httpTrigger", methods = ["post"], route = "starter_function", authLevel = "anonymous" }
[[functions]]
name = "orchestrator_function"
trigger = { type = "orchestrationTrigger" }
[[functions]]
name = "weather_reply"
trigger = { type = "blobTrigger", path = "weather-results/{name}", connection = "AzureWebJobsStorage" }
"#,
        )
        .unwrap();
        assert_eq!(f.functions.len(), 3);
        assert_eq!(
            f.functions[0].trigger,
            Trigger::Http {
                methods: Some(vec!["POST".into()]),
                route: "starter_function".into(),
                auth_level: AuthLevel::Anonymous
            }
        );
        assert_eq!(f.functions[0].line, 2);
        assert_eq!(f.functions[1].trigger, Trigger::Orchestration);
        assert_eq!(f.functions[2].line, 8);
    }

    #[test]
    fn http_defaults_follow_azure() {
        let f = parse("[[functions]]\nname = \"hello\"\ntrigger = { type = \"httpTrigger\" }\n")
            .unwrap();
        assert_eq!(
            f.functions[0].trigger,
            Trigger::Http {
                methods: None,
                route: "hello".into(),
                auth_level: AuthLevel::Function
            }
        );
    }

    /// Golden messages: what a user sees for each mistake.
    #[test]
    fn mistakes_are_named_with_file_and_line() {
        let cases = [
            (
                "[[functions]]\nname = \"a\"\ntrigger = { type = \"httpTriger\" }\n",
                "functions/x/function.toml line 3: function 'a': unknown trigger type 'httpTriger'; \
                 expected one of httpTrigger, queueTrigger, blobTrigger, timerTrigger, \
                 orchestrationTrigger, activityTrigger, entityTrigger",
            ),
            (
                "[[functions]]\nname = \"a\"\ntrigger = { type = \"httpTrigger\" }\n[[functions]]\nname = \"A\"\ntrigger = { type = \"activityTrigger\" }\n",
                "functions/x/function.toml line 5: function 'A' is defined twice",
            ),
            (
                "[[functions]]\nname = \"a\"\ntrigger = { type = \"httpTrigger\", methods = [\"fetch\"] }\n",
                "functions/x/function.toml line 3: function 'a': unknown HTTP method 'fetch'; \
                 expected some of get, post, put, delete, patch, head, options, trace",
            ),
            (
                "[[functions]]\nname = \"a\"\ntrigger = { type = \"queueTrigger\", route = \"x\" }\n",
                "functions/x/function.toml line 3: function 'a': 'route' does not apply to a \
                 queueTrigger (it takes: queueName, connection)",
            ),
            (
                "[[functions]]\nname = \"a\"\ntrigger = { type = \"blobTrigger\" }\n",
                "functions/x/function.toml line 3: function 'a': a blobTrigger needs 'path'",
            ),
            (
                "[[functions]]\nname = \"q\"\ntrigger = { type = \"queueTrigger\", queueName = \"My_Queue\" }\n",
                "functions/x/function.toml line 3: function 'q': queueName 'My_Queue' contains 'M'; \
                 Azure allows lower-case letters, digits and '-' only",
            ),
            (
                "[[functions]]\nname = \"q\"\ntrigger = { type = \"queueTrigger\", queueName = \"ab\" }\n",
                "functions/x/function.toml line 3: function 'q': queueName 'ab' is 2 characters \
                 long; Azure allows 3 to 63",
            ),
            (
                "[[functions]]\nname = \"q\"\ntrigger = { type = \"queueTrigger\", queueName = \"a--b\" }\n",
                "functions/x/function.toml line 3: function 'q': queueName 'a--b' contains '--'; \
                 Azure does not allow consecutive dashes",
            ),
            (
                "[[functions]]\nname = \"b\"\ntrigger = { type = \"blobTrigger\", path = \"Weather/{name}\" }\n",
                "functions/x/function.toml line 3: function 'b': container 'Weather' of path \
                 'Weather/{name}' contains 'W'; Azure allows lower-case letters, digits and '-' only",
            ),
            (
                "[[functions]]\nname = \"9lives\"\ntrigger = { type = \"activityTrigger\" }\n",
                "functions/x/function.toml line 2: '9lives' is not a valid function name: use \
                 letters, digits, '_' and '-', starting with a letter (at most 127)",
            ),
            (
                "",
                "functions/x/function.toml: no functions: add a [[functions]] entry with a name \
                 and a trigger",
            ),
            (
                "component = \"x.wasm\"\nallowedOutboundHosts = [\"https://ok.example.com\", \"api.example.com\"]\n[[functions]]\nname = \"a\"\ntrigger = { type = \"httpTrigger\" }\n",
                "functions/x/function.toml line 2: allowedOutboundHosts entry \"api.example.com\" \
                 has no scheme: write \"https://api.example.com\" (or \"*://api.example.com\" for \
                 http and https)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want);
        }
    }

    #[test]
    fn unknown_keys_carry_toml_position() {
        let e = parse("[[functions]]\nname = \"a\"\ntriger = { type = \"httpTrigger\" }\n")
            .unwrap_err();
        assert!(
            e.starts_with("functions/x/function.toml: TOML parse error at line 3"),
            "{e}"
        );
        assert!(e.contains("unknown field `triger`"), "{e}");
        let e = parse(
            "[[functions]]\nname = \"a\"\ntrigger = { type = \"httpTrigger\", rout = \"x\" }\n",
        )
        .unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("unknown field `rout`"),
            "{e}"
        );
    }
}
