//! Keys and access as Azure Functions has them: a master key, host keys,
//! function keys and system keys, kept in Azure's secrets files (see
//! [`store`]) and shared by every host of the app; who may call what.
//!
//! Keys are cached for [`REFRESH`] (60 s): a key added or changed on another
//! host is accepted here at once (a key that matches nothing makes us re-read
//! the store, at most every [`MISS_REREAD`]), a key deleted there stops
//! working here within 60 s.

pub mod cli;
pub mod redact;
pub mod secrets;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

pub use secrets::{DEFAULT, DURABLE_SYSTEM_KEY, FunctionSecrets, HostSecrets, Key, MASTER};
pub use store::{SecretStore, StoreError};

/// How long read keys are trusted before they are read again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// A key that matches nothing re-reads the store, but not more often than
/// this per file: a flood of wrong keys costs at most one read per 5 s.
pub const MISS_REREAD: Duration = Duration::from_secs(5);

/// The system key the durable management URLs carry (`code=`), while keys
/// are enforced. One per process: a process serves one app.
static URL_CODE: RwLock<Option<String>> = RwLock::new(None);

/// `code=` for the durable management URLs, when keys are enforced.
pub fn url_code() -> Option<String> {
    URL_CODE.read().expect("url code lock").clone()
}

/// What a request must present.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// A key of this function, a host key or the master key.
    Function(&'a str),
    /// The master key.
    Admin,
    /// This system key or the master key.
    System(&'a str),
}

/// A key store's files in Azure's shapes, cached.
pub struct Keys {
    store: SecretStore,
    /// Whether keys are enforced (the durable URLs then carry `code=`).
    enforced: bool,
    host: RwLock<Option<Cached<HostSecrets>>>,
    functions: RwLock<HashMap<String, Cached<FunctionSecrets>>>,
    /// One change at a time from this host (others are caught by ETags).
    writing: tokio::sync::Mutex<()>,
}

struct Cached<T> {
    value: Arc<T>,
    read: Instant,
}

/// Whether a key operation created or replaced the key (201 or 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
}

/// Which keys an admin operation addresses.
#[derive(Debug, Clone)]
pub enum Scope {
    /// `host.json` functionKeys (the admin API's `keys` / `functionkeys`).
    HostKeys,
    /// `host.json` systemKeys (`_master` is the master key).
    SystemKeys,
    /// `{function}.json`.
    Function(String),
}

fn file_of(function: &str) -> String {
    format!("{}.json", function.to_ascii_lowercase())
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Keys")
            .field("store", &self.store.describe())
            .field("enforced", &self.enforced)
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(store: SecretStore, enforced: bool) -> Keys {
        Keys {
            store,
            enforced,
            host: RwLock::new(None),
            functions: RwLock::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// Read (or create) the host's keys, and the system key `system` if given,
    /// so that start-up fails early when the store cannot be used.
    pub async fn prepare(&self, system: Option<&str>) -> Result<(), StoreError> {
        let host = self.host_secrets(false).await?;
        if let Some(name) = system
            && !host.system_keys.iter().any(|k| k.name == name)
        {
            self.set(&Scope::SystemKeys, name, None).await?;
        }
        Ok(())
    }

    /// The host's keys, from the cache when fresh (or when `force` is false
    /// and they were read less than [`REFRESH`] ago).
    pub async fn host_secrets(&self, force: bool) -> Result<Arc<HostSecrets>, StoreError> {
        if let Some(c) = &*self.host.read().expect("keys lock") {
            let age = c.read.elapsed();
            if age < REFRESH && !(force && age >= MISS_REREAD) {
                return Ok(c.value.clone());
            }
        }
        let secrets = loop {
            match self.store.read("host.json").await? {
                Some((data, _)) => break parse::<HostSecrets>(&self.store, "host.json", &data)?,
                None => {
                    let fresh = HostSecrets::generate();
                    match self.create("host.json", &fresh).await {
                        Ok(()) => {
                            tracing::info!(
                                "Created the master key and a default host key ({})",
                                self.store.place("host.json")
                            );
                            break fresh;
                        }
                        // Another host created it first: read theirs.
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        Ok(self.cache_host(secrets))
    }

    fn cache_host(&self, secrets: HostSecrets) -> Arc<HostSecrets> {
        for k in std::iter::once(&secrets.master_key)
            .chain(&secrets.function_keys)
            .chain(&secrets.system_keys)
        {
            redact::register(&k.value);
        }
        if self.enforced {
            let code = usable(&secrets.system_keys, DURABLE_SYSTEM_KEY);
            *URL_CODE.write().expect("url code lock") = code.map(|k| k.value.clone());
        }
        let value = Arc::new(secrets);
        *self.host.write().expect("keys lock") = Some(Cached {
            value: value.clone(),
            read: Instant::now(),
        });
        value
    }

    /// A function's keys (a `default` key is created on first use, as Azure does).
    pub async fn function_secrets(
        &self,
        function: &str,
        force: bool,
    ) -> Result<Arc<FunctionSecrets>, StoreError> {
        let file = file_of(function);
        if let Some(c) = self.functions.read().expect("keys lock").get(&file) {
            let age = c.read.elapsed();
            if age < REFRESH && !(force && age >= MISS_REREAD) {
                return Ok(c.value.clone());
            }
        }
        let secrets = loop {
            match self.store.read(&file).await? {
                Some((data, _)) => break parse::<FunctionSecrets>(&self.store, &file, &data)?,
                None => {
                    let fresh = FunctionSecrets::generate();
                    match self.create(&file, &fresh).await {
                        Ok(()) => break fresh,
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        Ok(self.cache_function(&file, secrets))
    }

    fn cache_function(&self, file: &str, secrets: FunctionSecrets) -> Arc<FunctionSecrets> {
        for k in &secrets.keys {
            redact::register(&k.value);
        }
        let value = Arc::new(secrets);
        self.functions.write().expect("keys lock").insert(
            file.to_string(),
            Cached {
                value: value.clone(),
                read: Instant::now(),
            },
        );
        value
    }

    async fn create<T: serde::Serialize>(&self, file: &str, value: &T) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(value).expect("secrets serialize");
        self.store.write(file, data, None, false).await
    }

    /// Whether `presented` satisfies `need`. Every candidate is compared in
    /// constant time; a miss re-reads the store (rate-limited) once.
    pub async fn allows(&self, need: Need<'_>, presented: &str) -> Result<bool, StoreError> {
        for force in [false, true] {
            let host = self.host_secrets(force).await?;
            let mut candidates: Vec<&Key> = vec![&host.master_key];
            let function;
            match need {
                Need::Admin => {}
                Need::System(name) => {
                    candidates.extend(host.system_keys.iter().filter(|k| k.name == name))
                }
                Need::Function(name) => {
                    function = self.function_secrets(name, force).await?;
                    candidates.extend(&host.function_keys);
                    candidates.extend(&function.keys);
                }
            }
            let mut matched = 0u8;
            for k in candidates.iter().filter(|k| !k.encrypted) {
                matched |= k.value.as_bytes().ct_eq(presented.as_bytes()).unwrap_u8();
            }
            if matched == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The keys of `scope` as (name, value), in file order. For SystemKeys
    /// `_master` is not listed (Azure lists it only when asked by name).
    pub async fn list(&self, scope: &Scope) -> Result<Vec<(String, String)>, StoreError> {
        let keys: Vec<Key> = match scope {
            Scope::HostKeys => self.host_secrets(true).await?.function_keys.clone(),
            Scope::SystemKeys => self.host_secrets(true).await?.system_keys.clone(),
            Scope::Function(f) => self.function_secrets(f, true).await?.keys.clone(),
        };
        Ok(keys
            .into_iter()
            .filter(|k| !k.encrypted)
            .map(|k| (k.name, k.value))
            .collect())
    }

    /// One key's value; `_master` among the system keys is the master key.
    pub async fn get(&self, scope: &Scope, name: &str) -> Result<Option<String>, StoreError> {
        if matches!(scope, Scope::SystemKeys) && name.eq_ignore_ascii_case(MASTER) {
            return Ok(Some(
                self.host_secrets(true).await?.master_key.value.clone(),
            ));
        }
        Ok(self
            .list(scope)
            .await?
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v))
    }

    /// Add or replace key `name` with `value` (a new one when None); the
    /// value and whether it was created. `_master` sets the master key (in
    /// any host scope), answered Created when generated and Updated when given,
    /// as Azure answers.
    pub async fn set(
        &self,
        scope: &Scope,
        name: &str,
        value: Option<String>,
    ) -> Result<(String, Outcome), StoreError> {
        let given = value.is_some();
        let value = value.unwrap_or_else(secrets::new_value);
        redact::register(&value);
        let _one = self.writing.lock().await;
        let master = !matches!(scope, Scope::Function(_)) && name.eq_ignore_ascii_case(MASTER);
        let mut outcome = Outcome::Created;
        self.modify(scope, |keys, master_key| {
            if master {
                outcome = if given {
                    Outcome::Updated
                } else {
                    Outcome::Created
                };
                *master_key = Key::new("master", value.clone());
                return true;
            }
            match keys.iter_mut().find(|k| k.name.eq_ignore_ascii_case(name)) {
                Some(k) => {
                    outcome = Outcome::Updated;
                    *k = Key::new(&k.name.clone(), value.clone());
                }
                None => keys.push(Key::new(name, value.clone())),
            }
            true
        })
        .await?;
        Ok((value, outcome))
    }

    /// Delete key `name`; false if there was none.
    pub async fn delete(&self, scope: &Scope, name: &str) -> Result<bool, StoreError> {
        let _one = self.writing.lock().await;
        self.modify(scope, |keys, _| {
            let before = keys.len();
            keys.retain(|k| !k.name.eq_ignore_ascii_case(name));
            keys.len() != before
        })
        .await
    }

    /// Read fresh, apply `change` (to the scope's keys and the master key),
    /// write back if it says so; retried when another host wrote meanwhile.
    async fn modify(
        &self,
        scope: &Scope,
        mut change: impl FnMut(&mut Vec<Key>, &mut Key) -> bool,
    ) -> Result<bool, StoreError> {
        let file = match scope {
            Scope::Function(f) => file_of(f),
            _ => "host.json".to_string(),
        };
        for _ in 0..5 {
            let read = self.store.read(&file).await?;
            let exists = read.is_some();
            let version = read.as_ref().and_then(|(_, v)| v.clone());
            let result = match scope {
                Scope::Function(_) => {
                    let mut s = match &read {
                        Some((data, _)) => parse::<FunctionSecrets>(&self.store, &file, data)?,
                        None => FunctionSecrets::generate(),
                    };
                    let mut unused = Key::new("", String::new());
                    if !change(&mut s.keys, &mut unused) {
                        return Ok(false);
                    }
                    let data = serde_json::to_vec_pretty(&s).expect("secrets serialize");
                    self.store
                        .write(&file, data, version.as_deref(), exists)
                        .await
                        .map(|()| {
                            self.cache_function(&file, s);
                        })
                }
                _ => {
                    let mut s = match &read {
                        Some((data, _)) => parse::<HostSecrets>(&self.store, &file, data)?,
                        None => HostSecrets::generate(),
                    };
                    let keys = match scope {
                        Scope::SystemKeys => &mut s.system_keys,
                        _ => &mut s.function_keys,
                    };
                    if !change(keys, &mut s.master_key) {
                        return Ok(false);
                    }
                    let data = serde_json::to_vec_pretty(&s).expect("secrets serialize");
                    self.store
                        .write(&file, data, version.as_deref(), exists)
                        .await
                        .map(|()| {
                            self.cache_host(s);
                        })
                }
            };
            match result {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(self.store.place(&file)))
    }
}

/// The first readable key named `name`.
fn usable<'a>(keys: &'a [Key], name: &str) -> Option<&'a Key> {
    keys.iter().find(|k| k.name == name && !k.encrypted)
}

fn parse<T: serde::de::DeserializeOwned>(
    store: &SecretStore,
    file: &str,
    data: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(data).map_err(|e| StoreError::Invalid {
        place: store.place(file),
        message: e.to_string(),
    })
}

/// App settings as keys need them: `[Values]` of local.settings.toml, then
/// the host's environment (where Azure keeps app settings).
pub fn setting_lookup(
    settings: &crate::config::AppSettings,
) -> impl Fn(&str) -> Option<String> + '_ {
    |k| {
        settings
            .get(k)
            .map(str::to_string)
            .or_else(|| std::env::var(k).ok())
    }
}

/// Which store the settings ask for, opened (no storage call is made).
/// `AzureWebJobsSecretStorageType`: `blob` (the default; `files` when there
/// is no `AzureWebJobsStorage`, as Azure falls back) or `files`.
pub fn open_store(
    script_root: &Path,
    setting: impl Fn(&str) -> Option<String>,
    hub: &str,
) -> anyhow::Result<SecretStore> {
    let kind = setting("AzureWebJobsSecretStorageType")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "blob".into())
        .to_ascii_lowercase();
    let files = || SecretStore::Files {
        dir: script_root.join(store::FILES_DIR),
    };
    match kind.as_str() {
        "files" => Ok(files()),
        "blob" => {
            let Some(connection) = setting("AzureWebJobsStorage").filter(|c| !c.is_empty()) else {
                return Ok(files());
            };
            let storage = crate::storage::azure::connect(&connection)
                .map_err(|e| anyhow::anyhow!("AzureWebJobsStorage (for keys): {e}"))?;
            let host_id = store::host_id(&setting, hub).map_err(anyhow::Error::msg)?;
            Ok(SecretStore::Blob {
                blobs: storage.blobs,
                host_id,
            })
        }
        other => anyhow::bail!(
            "AzureWebJobsSecretStorageType '{other}' is not supported here: use \"blob\" (keys in the \
             azure-webjobs-secrets container of AzureWebJobsStorage) or \"files\" (in {}/)",
            store::FILES_DIR
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::Files {
            dir: dir.path().join(store::FILES_DIR),
        };
        (dir, Keys::new(store, false))
    }

    #[tokio::test]
    async fn keys_are_created_checked_and_changed() {
        let (dir, keys) = files();
        let host = keys.host_secrets(false).await.unwrap();
        assert!(dir.path().join(".host-secrets/host.json").exists());
        assert!(dir.path().join(".host-secrets/.gitignore").exists());
        let master = host.master_key.value.clone();
        let host_key = host.function_keys[0].value.clone();
        let f = keys.function_secrets("Hello", false).await.unwrap();
        assert!(dir.path().join(".host-secrets/hello.json").exists());
        let own = f.keys[0].value.clone();
        let other = keys.function_secrets("other", false).await.unwrap().keys[0]
            .value
            .clone();

        for (need, key, ok) in [
            (Need::Function("hello"), &own, true),
            (Need::Function("hello"), &host_key, true),
            (Need::Function("hello"), &master, true),
            (Need::Function("hello"), &other, false),
            (Need::Admin, &host_key, false),
            (Need::Admin, &master, true),
            (Need::System(DURABLE_SYSTEM_KEY), &host_key, false),
            (Need::System(DURABLE_SYSTEM_KEY), &master, true),
        ] {
            assert_eq!(keys.allows(need, key).await.unwrap(), ok, "{need:?}");
        }
        assert!(!keys.allows(Need::Admin, "").await.unwrap());

        let (v, o) = keys
            .set(&Scope::HostKeys, "ci", Some("a-key-of-my-own-1234".into()))
            .await
            .unwrap();
        assert_eq!((v.as_str(), o), ("a-key-of-my-own-1234", Outcome::Created));
        assert!(
            keys.allows(Need::Function("hello"), "a-key-of-my-own-1234")
                .await
                .unwrap()
        );
        let (_, o) = keys.set(&Scope::HostKeys, "ci", None).await.unwrap();
        assert_eq!(o, Outcome::Updated);
        assert!(keys.delete(&Scope::HostKeys, "ci").await.unwrap());
        assert!(!keys.delete(&Scope::HostKeys, "ci").await.unwrap());
        keys.prepare(Some(DURABLE_SYSTEM_KEY)).await.unwrap();
        let system = keys
            .get(&Scope::SystemKeys, DURABLE_SYSTEM_KEY)
            .await
            .unwrap()
            .unwrap();
        assert!(
            keys.allows(Need::System(DURABLE_SYSTEM_KEY), &system)
                .await
                .unwrap()
        );
        assert_eq!(
            keys.get(&Scope::SystemKeys, MASTER).await.unwrap(),
            Some(master)
        );
        // A second store on the same files sees the same keys.
        let again = Keys::new(keys.store().clone(), false);
        assert!(again.allows(Need::Function("hello"), &own).await.unwrap());
    }
}
