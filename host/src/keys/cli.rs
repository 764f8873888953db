//! `host keys list|set|delete`: the same key store the running hosts use
//! (blob or files, per the script root's settings), without a host.

use std::path::Path;

use anyhow::Context;

use super::{Keys, MASTER, Outcome, Scope};
use crate::config::{HostConfig, LocalSettings};

/// What `host keys` was asked to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Every key: master, host, system, and each function's.
    List { function: Option<String> },
    /// Set `name` (a new value when `value` is None).
    Set {
        name: String,
        value: Option<String>,
        function: Option<String>,
        system: bool,
    },
    Delete {
        name: String,
        function: Option<String>,
        system: bool,
    },
}

fn scope(function: Option<String>, system: bool) -> anyhow::Result<Scope> {
    match (function, system) {
        (Some(_), true) => anyhow::bail!("give --function or --system, not both"),
        (Some(f), false) => Ok(Scope::Function(f)),
        (None, true) => Ok(Scope::SystemKeys),
        (None, false) => Ok(Scope::HostKeys),
    }
}

/// Run `action` against the store of the app at `script_root`; what to print.
pub async fn run(script_root: &Path, action: Action) -> anyhow::Result<String> {
    let host = HostConfig::load(&script_root.join("host.toml"))?;
    let local = LocalSettings::load(&script_root.join("local.settings.toml"))?;
    let settings = local.app_settings(|k| std::env::var(k).ok());
    let store = super::open_store(
        script_root,
        super::setting_lookup(&settings),
        &host.extensions.durable_task.hub_name,
    )?;
    let place = store.describe();
    let keys = Keys::new(store, false);
    let context = || format!("keys in {place}");
    let mut out = String::new();
    let mut line = |scope: &str, name: &str, value: &str| {
        out.push_str(&format!("{scope:<24} {name:<24} {value}\n"));
    };
    match action {
        Action::List { function } => {
            let functions = match function {
                Some(f) => vec![f],
                None => {
                    let host = keys.host_secrets(true).await.with_context(context)?;
                    line("master", MASTER, &host.master_key.value);
                    for k in host.function_keys.iter().filter(|k| !k.encrypted) {
                        line("host", &k.name, &k.value);
                    }
                    for k in host.system_keys.iter().filter(|k| !k.encrypted) {
                        line("system", &k.name, &k.value);
                    }
                    keys.store()
                        .function_files()
                        .await
                        .with_context(context)?
                        .into_iter()
                        .map(|f| f.trim_end_matches(".json").to_string())
                        .collect()
                }
            };
            for f in functions {
                let scope = Scope::Function(f.clone());
                for (name, value) in keys.list(&scope).await.with_context(context)? {
                    line(&format!("function/{f}"), &name, &value);
                }
            }
        }
        Action::Set {
            name,
            value,
            function,
            system,
        } => {
            check_name(&name)?;
            if let Some(v) = &value
                && !super::secrets::valid_value(v)
            {
                anyhow::bail!(
                    "a key value is 16 to 256 printable characters without spaces, '&', '#', '%' or '?'"
                );
            }
            let scope = scope(function, system)?;
            let (value, outcome) = keys.set(&scope, &name, value).await.with_context(context)?;
            let verb = match outcome {
                Outcome::Created => "created",
                Outcome::Updated => "updated",
            };
            out.push_str(&format!("{verb} {name}: {value}\n"));
        }
        Action::Delete {
            name,
            function,
            system,
        } => {
            check_name(&name)?;
            if name.starts_with('_') {
                anyhow::bail!(
                    "'{name}' cannot be deleted (names starting with '_' are the host's)"
                );
            }
            let scope = scope(function, system)?;
            if !keys.delete(&scope, &name).await.with_context(context)? {
                anyhow::bail!("there is no key '{name}' there");
            }
            out.push_str(&format!("deleted {name}\n"));
        }
    }
    Ok(out)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !super::secrets::valid_name(name) {
        anyhow::bail!("'{name}' is not a key name: letters, digits, '-', '_' and '.'");
    }
    Ok(())
}
